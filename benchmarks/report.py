"""Turn a pytest-benchmark JSON file into a table (stdout, markdown) and a PNG bar chart.

    python benchmarks/report.py benchmarks/results/sgd.json [--png out.png]

Throughput comes from ``extra_info`` (``updates_per_s``, ``samples_per_s`` or ``events_per_s``)
when the benchmark recorded one, else from the median time.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

RATE_KEYS = ("updates_per_s", "samples_per_s", "events_per_s")


def rows(path: Path):
    data = json.loads(path.read_text())
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        key = next((k for k in RATE_KEYS if k in info), None)
        yield {
            "group": bench.get("group") or "",
            "name": bench["name"],
            "median_s": bench["stats"]["median"],
            "rate": info.get(key) if key else None,
            "unit": key or "",
        }


def table(records) -> str:
    lines = []
    groups = defaultdict(list)
    for r in records:
        groups[r["group"]].append(r)
    for group, members in groups.items():
        lines.append(f"\n### {group}\n")
        lines.append("| case | median s | throughput |")
        lines.append("| --- | ---: | ---: |")
        for r in sorted(members, key=lambda r: -(r["rate"] or 0)):
            rate = f"{r['rate'] / 1e6:.2f} M {r['unit'].replace('_per_s', '')}/s" if r["rate"] \
                else ""
            lines.append(f"| {r['name']} | {r['median_s']:.4f} | {rate} |")
    return "\n".join(lines)


def plot(records, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    for r in records:
        groups[r["group"]].append(r)
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 2.2 * len(groups)), squeeze=False)
    for ax, (group, members) in zip(axes[:, 0], groups.items(), strict=True):
        members = sorted(members, key=lambda r: r["rate"] or 1 / r["median_s"])
        values = [(r["rate"] or 1 / r["median_s"]) / 1e6 for r in members]
        ax.barh([r["name"] for r in members], values, color="tab:blue")
        unit = members[0]["unit"].replace("_per_s", "") or "calls"
        ax.set_title(group, fontsize=9)
        ax.set_xlabel(f"M {unit} per second")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("json", type=Path)
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    records = list(rows(args.json))
    print(table(records))
    png = args.png or args.json.with_suffix(".png")
    plot(records, png)
    print(f"\nplot written to {png}")


if __name__ == "__main__":
    main()
