import hashlib
import http.server
import io
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastrec.data import DownloadError, download_movielens, load_csv, load_movielens

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ML_LATEST_SMALL = SHARED_DATA / "ml-latest-small"

# (user, item, rating, timestamp) rows every MovieLens layout below encodes.
ROWS = [(1, 10, 4.0, 100), (1, 30, 3.5, 90), (2, 10, 5.0, 80), (7, 20, 0.5, 70)]


def movielens_text(layout: str, rows=ROWS) -> str:
    if layout == "u.data":
        return "".join(f"{u}\t{i}\t{r:g}\t{t}\n" for u, i, r, t in rows)
    if layout == "ratings.dat":
        return "".join(f"{u}::{i}::{r:g}::{t}\n" for u, i, r, t in rows)
    return "userId,movieId,rating,timestamp\r\n" + "".join(
        f"{u},{i},{r:g},{t}\r\n" for u, i, r, t in rows)


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


@pytest.mark.parametrize("layout", ["u.data", "ratings.dat", "ratings.csv"])
def test_load_movielens_each_layout(tmp_path, layout):
    data = load_movielens(write(tmp_path / layout, movielens_text(layout)))
    np.testing.assert_array_equal(data.user_ids, [1, 2, 7])
    np.testing.assert_array_equal(data.item_ids, [10, 20, 30])
    np.testing.assert_array_equal(data.users, [0, 0, 1, 2])
    np.testing.assert_array_equal(data.items, [0, 2, 0, 1])
    np.testing.assert_array_equal(data.values, [4.0, 3.5, 5.0, 0.5])
    np.testing.assert_array_equal(data.timestamps, [100, 90, 80, 70])
    assert data.values.dtype == np.float32
    assert data.timestamps.dtype == np.int64


def test_load_movielens_directory_dtype_and_content_sniffing(tmp_path):
    write(tmp_path / "ratings.dat", movielens_text("ratings.dat"))
    write(tmp_path / "movies.dat", "1::Toy Story (1995)::Animation\n")
    data = load_movielens(tmp_path, dtype=np.float64)
    assert data.values.dtype == np.float64 and data.nnz == len(ROWS)
    # The layout comes from the content, so a renamed file still loads.
    renamed = write(tmp_path / "my_ratings.txt", movielens_text("u.data"))
    assert load_movielens(renamed).nnz == len(ROWS)


def test_load_movielens_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    text = "1\t10\t4\t100\n\n2\t20\t3\t90\n\n"
    assert load_movielens(write(tmp_path / "u.data", text)).nnz == 2
    bad = "1\t10\t4\t100\n\n2\tx\t3\t90\n"
    with pytest.raises(ValueError, match=r"line 3 is malformed: '2\\tx\\t3\\t90'"):
        load_movielens(write(tmp_path / "u.data", bad))


def test_load_movielens_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_movielens(tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match="contains none of"):
        load_movielens(tmp_path)
    write(tmp_path / "u.data", movielens_text("u.data"))
    write(tmp_path / "ratings.csv", movielens_text("ratings.csv"))
    with pytest.raises(ValueError, match="several ratings files"):
        load_movielens(tmp_path)


@pytest.mark.parametrize("text, match", [
    ("", "is empty"),
    ("\n\n", "is empty"),
    ("userId,movieId,rating,timestamp\r\n", "holds no data lines"),
    ("user,item,rating\n1,2,3\n", "not a MovieLens ratings file"),
    ("1 2 3 4\n", "not a MovieLens ratings file"),
])
def test_load_movielens_unknown_format(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_movielens(write(tmp_path / "ratings.csv", text))


@pytest.mark.parametrize("layout, text, match", [
    ("u.data", "1\t2\t3\t4\n1\t2\t3\n", r"line 2 is malformed"),
    ("u.data", "1\t2\t3\t4\n1\t2\t3\t4\t5\n", r"line 2"),
    ("ratings.dat", "1::2::3::4\n1::2::3::4\n1:2:3:4:5:6:7\n", r"line 3 is malformed"),
    ("ratings.dat", "1::2::3::4\n1::2::3\n", r"line 2 is malformed"),
    ("ratings.dat", "1::2::3::4\n1::2\n1:2:3:4:5:6:7\n", r"line 2 is malformed"),
    ("ratings.csv", "userId,movieId,rating,timestamp\r\n1,2,3,4\r\n1,2,3,4,5\r\n", r"line 3"),
    ("ratings.csv", "userId,movieId,rating,timestamp\r\n1,2,3,4\r\nx,2,3,4\r\n",
     r"line 3 is malformed: 'x,2,3,4'; expected CSV with header"),
])
def test_load_movielens_malformed_line_is_named(tmp_path, layout, text, match):
    with pytest.raises(ValueError, match=match):
        load_movielens(write(tmp_path / layout, text))


@pytest.mark.parametrize("field, match", [
    ("nan", "line 4: rating is NaN or infinite: '1,3,nan,4'"),
    ("NaN", "line 4: rating is NaN or infinite"),
    ("-inf", "line 4: rating is NaN or infinite"),
    ("", "line 4: rating is NaN or infinite"),
    ("good", "line 4 is malformed: '1,3,good,4'"),
])
def test_load_movielens_bad_rating_names_the_line(tmp_path, field, match):
    text = f"userId,movieId,rating,timestamp\r\n1,2,3,4\r\n5,6,7,8\r\n1,3,{field},4\r\n"
    with pytest.raises(ValueError, match=match):
        load_movielens(write(tmp_path / "ratings.csv", text))


def test_load_csv_named_columns_and_string_ids(tmp_path):
    path = write(tmp_path / "events.csv",
                 "ts;who;what;score;extra\n5;bob;b;1.5;x\n3;alice;a;2;y\n4;bob;a;3;z\n")
    data = load_csv(path, "who", "what", rating_col="score", timestamp_col="ts", sep=";",
                    dtype=np.float64)
    np.testing.assert_array_equal(data.user_ids, ["alice", "bob"])
    np.testing.assert_array_equal(data.item_ids, ["a", "b"])
    np.testing.assert_array_equal(data.users, [1, 0, 1])
    np.testing.assert_array_equal(data.items, [1, 0, 0])
    np.testing.assert_array_equal(data.values, [1.5, 2.0, 3.0])
    np.testing.assert_array_equal(data.timestamps, [5, 3, 4])


def test_load_csv_positions_without_header_is_implicit(tmp_path):
    path = write(tmp_path / "pairs.txt", "3 1\n1 2\n3 2\n")
    data = load_csv(path, 0, 1, sep=" ")
    np.testing.assert_array_equal(data.user_ids, [1, 3])
    np.testing.assert_array_equal(data.values, [1.0, 1.0, 1.0])
    assert data.timestamps is None


def test_load_csv_repeated_pairs_raise_or_merge(tmp_path):
    path = write(tmp_path / "clicks.txt", "3 1\n1 2\n3 1\n")
    with pytest.raises(ValueError, match=r"duplicate \(user, item\) pair \(3, 1\) at entry 2"):
        load_csv(path, 0, 1, sep=" ")
    data = load_csv(path, 0, 1, sep=" ", duplicates="sum")
    assert dict(zip(data.user_ids[data.users].tolist(), data.values.tolist(), strict=True)) == \
        {3: 2.0, 1: 1.0}


def test_load_csv_positions_with_header(tmp_path):
    path = write(tmp_path / "r.csv", "u,i,r\n1,2,5\n2,2,4\n")
    data = load_csv(path, 0, 1, rating_col=2, header=True)
    np.testing.assert_array_equal(data.values, [5.0, 4.0])
    # Forgetting header=True makes line 1 data; the error says so.
    with pytest.raises(ValueError, match="line 1 is malformed.*pass header=True"):
        load_csv(path, 0, 1, rating_col=2)


def test_load_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "missing.csv", "u", "i")
    path = write(tmp_path / "r.csv", "u,i,r\n1,2,5\n,2,4\n3,3,nan\n")
    with pytest.raises(ValueError, match="no column 'user'"):
        load_csv(path, "user", "i")
    with pytest.raises(ValueError, match="position 5 out of range"):
        load_csv(path, 0, 5, header=True)
    with pytest.raises(ValueError, match="is a name but header=False"):
        load_csv(path, "u", "i", header=False)
    with pytest.raises(ValueError, match=r"line 3 is malformed: ',2,4'"):
        load_csv(path, "u", "i")
    with pytest.raises(ValueError, match=r"line 3 is malformed"):
        load_csv(path, "u", "i", rating_col="r")
    only_nan = write(tmp_path / "n.csv", "u,i,r\n1,2,5\n3,3,nan\n")
    with pytest.raises(ValueError, match=r"line 3: rating is NaN or infinite"):
        load_csv(only_nan, "u", "i", rating_col="r")


# -- download against a local server ---------------------------------------------------------------
def make_zip(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buffer.getvalue()


class ArchiveServer:
    """Serves ``files`` (path -> bytes) on 127.0.0.1 and records the requests; a path in
    ``announced`` sends that Content-Length instead of the true one (a truncated transfer)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.announced: dict[str, int] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                length = server.announced.get(self.path, len(body))
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/"
        # A short poll interval keeps shutdown() quick.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server():
    srv = ArchiveServer()
    yield srv
    srv.close()


def fake_latest_small() -> bytes:
    return make_zip({"ml-latest-small/ratings.csv": movielens_text("ratings.csv"),
                     "ml-latest-small/README.txt": "fake\n"})


def test_download_extracts_and_then_uses_the_cache(server, tmp_path):
    archive = fake_latest_small()
    server.files["/files/ml-latest-small.zip"] = archive
    digest = hashlib.sha256(archive).hexdigest()
    target = download_movielens(data_home=tmp_path, base_url=server.url, verify=digest)
    assert target == tmp_path / "ml-latest-small"
    assert (target / "README.txt").read_text() == "fake\n"
    assert load_movielens(target).nnz == len(ROWS)
    # Only the extracted folder is left behind: no archive, no temporary files.
    assert [p.name for p in tmp_path.iterdir()] == ["ml-latest-small"]
    again = download_movielens(data_home=tmp_path, base_url=server.url, verify=digest)
    assert again == target and server.requests == ["/files/ml-latest-small.zip"]


@pytest.mark.parametrize("variant, member", [("ml-100k", "u.data"), ("ml-1m", "ratings.dat")])
def test_download_other_variants_without_hash(server, tmp_path, variant, member):
    server.files[f"/files/{variant}.zip"] = make_zip(
        {f"{variant}/{member}": movielens_text(member)})
    target = download_movielens(variant, data_home=tmp_path, base_url=server.url, verify=False)
    assert load_movielens(target).nnz == len(ROWS)


def test_download_default_home(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    server.files["/files/ml-latest-small.zip"] = fake_latest_small()
    target = download_movielens(base_url=server.url, verify=False)
    assert target == tmp_path / ".cache" / "fastrec" / "ml-latest-small"


def test_download_checks_the_official_hash_by_default(server, tmp_path):
    server.files["/files/ml-latest-small.zip"] = fake_latest_small()
    with pytest.raises(DownloadError, match="sha256 .* does not match the expected 696d65a3"):
        download_movielens(data_home=tmp_path, base_url=server.url)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("body, announced, match", [
    (None, None, "HTTP 404"),
    (fake_latest_small(), 10**6, "got [0-9]+ of 1000000 bytes"),
    (b"this is not a zip", None, "not a zip archive"),
    (make_zip({"ml-latest-small/movies.csv": "x"}), None, "has no ml-latest-small/ratings.csv"),
    (make_zip({"ratings.csv": "x"}), None, "has no ml-latest-small/ratings.csv"),
], ids=["404", "truncated", "not-zip", "no-ratings", "no-top-folder"])
def test_download_failures_leave_nothing_behind(server, tmp_path, body, announced, match):
    if body is not None:
        server.files["/files/ml-latest-small.zip"] = body
    if announced is not None:
        server.announced["/files/ml-latest-small.zip"] = announced
    with pytest.raises(DownloadError, match=match):
        download_movielens(data_home=tmp_path, base_url=server.url, verify=False)
    assert list(tmp_path.iterdir()) == []


def test_download_unreachable_server_and_bad_variant(tmp_path):
    # A port that was just free: nothing listens there, so the connection is refused at once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match="failed.*refused"):
        download_movielens(data_home=tmp_path, base_url=f"http://127.0.0.1:{port}/", timeout=5)
    with pytest.raises(ValueError, match="unknown MovieLens variant"):
        download_movielens("ml-10m", data_home=tmp_path)


# -- real data --------------------------------------------------------------------------------
@pytest.mark.skipif(not ML_LATEST_SMALL.exists(),
                    reason=f"shared MovieLens data not found at {ML_LATEST_SMALL}")
def test_load_shared_ml_latest_small():
    data = load_movielens(ML_LATEST_SMALL)
    assert (data.nnz, data.n_users, data.n_items) == (100_836, 610, 9_724)
    assert data.values.min() == 0.5 and data.values.max() == 5.0
    assert np.all(np.unique(data.values * 2) == np.arange(1, 11))
    assert (data.timestamps.min(), data.timestamps.max()) == (828_124_615, 1_537_799_250)
    assert data.item_ids[-1] == 193_609
