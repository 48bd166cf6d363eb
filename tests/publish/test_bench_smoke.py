"""benchmarks/bench_publish.py runs (tiny sizes); its correctness checks hold."""
from benchmarks.bench_publish import bench_index


def test_bench_index_small(tmp_path):
    res = bench_index(6, 2, tmp_path)
    assert res["index_entries"] == 6 and res["index_unique"] and res["index_matches_published"]
    assert res["index_equals_rebuilt"] and res["git_clean"]
