"""pytest-benchmark groups for GRU4Rec (not run in CI):

    pytest benchmarks/bench_gru4rec.py --benchmark-only --benchmark-group-by=group

Training: one epoch over the video sequences of the first 1000 users, hidden 100, embedding 64,
n_sample 2048, 2 threads, fastrec Cython and Numba against the same architecture in PyTorch;
the events/s of each run are in ``extra_info``. Raw step: GRU forward + full backward against
``torch.nn.GRU``. Needs ``torch==2.13.0`` and ../shared/data (skipped otherwise). First-call
Numba compile is excluded by a warm-up round. ``benchmarks/gru4rec_report.py`` prints the same
comparisons as a table, with medians and ratios.
"""

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from gru4rec_report import EMBEDDING, HIDDEN, raw_steps  # noqa: E402
from gru4rec_torch import train_torch  # noqa: E402

import fastrec  # noqa: E402
from fastrec.data import Sessions, load_sasrec_sequences  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sequences-sasrec-video"
THREADS = 2


@pytest.fixture(scope="module")
def sessions():
    if not DATA.is_dir():
        pytest.skip("shared video sequences not present")
    frame = load_sasrec_sequences(DATA)
    return Sessions.from_frame(frame[frame.session_id <= 1000])


@pytest.mark.parametrize("batch", [32, 256])
@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
@pytest.mark.parametrize("impl", ["cython", "numba", "torch"])
def test_train_epoch(benchmark, sessions, batch, loss, impl):
    benchmark.group = f"gru4rec-train-B{batch}-{loss}"
    rates = []

    def run():
        if impl == "torch":
            rates.append(train_torch(sessions, hidden=HIDDEN, embedding=EMBEDDING, loss=loss,
                                     n_sample=2048, batch_size=batch, n_threads=THREADS)[1])
        else:
            model = fastrec.GRU4Rec(hidden_size=HIDDEN, embedding_size=EMBEDDING, loss=loss,
                                    n_sample=2048, batch_size=batch, n_epochs=1, backend=impl,
                                    n_threads=THREADS, random_state=0).fit(sessions)
            rates.append(model.events_per_second_)

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    benchmark.extra_info["events_per_second"] = sorted(rates)[len(rates) // 2]


@pytest.mark.parametrize("batch", [32, 256])
@pytest.mark.parametrize("impl", ["cython", "numba", "torch.nn.GRU"])
def test_raw_gru_step(benchmark, batch, impl):
    benchmark.group = f"gru-raw-step-B{batch}"
    torch.set_num_threads(THREADS)
    step = raw_steps(batch, 1, THREADS)[impl]
    step()  # compile / warm up
    benchmark(step)
