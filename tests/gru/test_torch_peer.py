"""The PyTorch peer of the GRU4Rec benchmarks (benchmarks/gru4rec_torch.py) is the same model:
with the same seed it starts from fastrec's initial weights, draws the same negatives and, in
float64, trains to the same weights (to rounding), so the accuracy report compares like with
like."""

import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastrec import GRU4Rec
from fastrec.data import Sessions, synthetic_sessions

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from gru4rec_torch import to_fastrec, train_torch  # noqa: E402


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
def test_peer_trains_like_fastrec(loss):
    frame = synthetic_sessions(n_sessions=200, n_items=30, random_state=1)
    data = Sessions.from_frame(frame)
    hp = dict(n_sample=24, batch_size=8, n_epochs=2, learning_rate=0.05)
    ours = GRU4Rec(hidden_size=12, embedding_size=6, loss=loss, **hp, backend="numpy",
                   n_threads=1, random_state=3, dtype="float64", early_stopping=False).fit(frame)
    peer, _, _ = train_torch(data, hidden=12, embedding=6, loss=loss, **hp, n_threads=1,
                             seed=3, dtype=np.float64)
    theirs = to_fastrec(peer, data.item_ids, 12, 6)
    for name in ("input_embedding_", "gru_weights_", "output_table_"):
        assert_allclose(getattr(theirs, name), getattr(ours, name), rtol=0, atol=1e-9,
                        err_msg=name)
    assert ours.evaluate(frame) == theirs.evaluate(frame)
