"""fastrec.dask.MF against the peer a user would pick instead, Spark MLlib ALS, on the same
ratings: RMSE on a held-out split and fit time.

Setup (not part of the test extras; run once on the benchmark machine):

    apt-get update && apt-get install -y default-jre-headless   # Spark needs Java 17+
    pip install pyspark "fastrec[dask]"

    python benchmarks/dask_vs_spark_als.py [--movielens ../shared/data/ml-latest-small]
                                           [--nnz 5000000] [--rounds 3]

Both run on 2 cores of one host: Spark with ``local[2]``, fastrec on a LocalCluster of 2
single-threaded worker processes. Fit time is the wall time of ``fit`` on data already in the
engine (a cached Spark DataFrame counted once; a persisted Dask DataFrame), so JVM start-up
and file parsing are excluded on both sides; medians of ``--rounds`` fits. RMSE is measured
on the test pairs whose user and item occur in training (Spark's ``coldStartStrategy="drop"``;
fastrec is scored on the same pairs). 80/20 random split, seed 0. Both with their defaults at
rank 32 (fastrec.dask.MF's are fastrec.MF's: 20 epochs, learning rate 0.03, reg 0.1).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import idle_fraction  # noqa: E402

import fastrec.dask  # noqa: E402
from fastrec.data import load_movielens, random_split, synthetic_ratings  # noqa: E402

DEFAULT_MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"
RANK = 32
# Each library's defaults at the same rank (Spark's maxIter=10 and regParam=0.1 are its
# defaults, written out); fastrec.dask.MF with 4 x 4 blocks (2 per worker).
ALS = dict(rank=RANK, maxIter=10, regParam=0.1)
MF = dict(n_factors=RANK, n_blocks=4, random_state=0)


def frames(data) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = random_split(data, test_size=0.2, random_state=0)

    def frame(part):
        return pd.DataFrame({"user": part.user_ids[part.users].astype(np.int64),
                             "item": part.item_ids[part.items].astype(np.int64),
                             "rating": part.values.astype(np.float32)})

    train_frame, test_frame = frame(train), frame(test)
    known = test_frame.user.isin(train_frame.user) & test_frame.item.isin(train_frame.item)
    return train_frame, test_frame[known]


def spark_als(spark, train: pd.DataFrame, test: pd.DataFrame, rounds: int):
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.recommendation import ALS as SparkALS

    train_df = spark.createDataFrame(train.astype({"rating": np.float64})).cache()
    test_df = spark.createDataFrame(test.astype({"rating": np.float64})).cache()
    train_df.count(), test_df.count()
    times, model = [], None
    for _ in range(rounds):
        als = SparkALS(userCol="user", itemCol="item", ratingCol="rating",
                       coldStartStrategy="drop", seed=0, **ALS)
        start = time.perf_counter()
        model = als.fit(train_df)
        times.append(time.perf_counter() - start)
    rmse = RegressionEvaluator(metricName="rmse", labelCol="rating",
                               predictionCol="prediction").evaluate(model.transform(test_df))
    train_df.unpersist(), test_df.unpersist()
    return rmse, statistics.median(times)


def fastrec_dask(client, train: pd.DataFrame, test: pd.DataFrame, rounds: int):
    import dask.dataframe as dd

    ddf = dd.from_pandas(train, npartitions=8).persist()
    times, model = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        model = fastrec.dask.MF(client=client, **MF).fit(ddf)
        times.append(time.perf_counter() - start)
    local = model.to_local(include_seen=False)
    error = local.predict(test.user.to_numpy(), test.item.to_numpy()) - test.rating.to_numpy()
    return float(np.sqrt(np.mean(error.astype(np.float64) ** 2))), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--movielens", type=Path, default=DEFAULT_MOVIELENS)
    parser.add_argument("--nnz", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from distributed import Client, LocalCluster
    from pyspark.sql import SparkSession

    print(f"machine idle: {idle_fraction():.0%} (other agents share this machine)")
    sets = {"ml-latest-small": load_movielens(args.movielens),
            f"synthetic {args.nnz / 1e6:g}M": synthetic_ratings(
                args.nnz // 50, args.nnz // 250, args.nnz, seed=0).interactions}
    spark = (SparkSession.builder.master("local[2]").appName("fastrec-bench")
             .config("spark.driver.memory", "6g").config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        for name, data in sets.items():
            train, test = frames(data)
            als_rmse, als_time = spark_als(spark, train, test, args.rounds)
            mf_rmse, mf_time = fastrec_dask(client, train, test, args.rounds)
            rows.append((name, len(train), len(test), als_rmse, als_time, mf_rmse, mf_time))
    spark.stop()
    print(f"\nSpark ALS {ALS}, local[2]; fastrec.dask.MF {MF}, 2 workers x 1 thread")
    print("| data | train | test | ALS RMSE | ALS fit s | fastrec.dask RMSE | fastrec.dask fit s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, n_train, n_test, a_rmse, a_time, m_rmse, m_time in rows:
        print(f"| {name} | {n_train:,} | {n_test:,} | {a_rmse:.4f} | {a_time:.1f} | "
              f"{m_rmse:.4f} | {m_time:.1f} |")


if __name__ == "__main__":
    main()
