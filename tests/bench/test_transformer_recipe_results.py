"""bench transformer writes each shipped recipe's `# result` line from its row, dated
with the day the row was measured; a merged row without a date leaves the line alone."""
from types import SimpleNamespace

from netshrink_bench.suites.transformer_report import write_recipe_results

ROW = dict(cos_mean=0.99451, cos_min=0.9543, top5=0.9191, bytes=16_290_000, ratio=5.58, speedup_b1=1.523,
           speedup_b64=1.581, kernels="int8 static fbgemm x37")


def test_result_lines_carry_the_rows_own_date_and_undated_rows_leave_them(tmp_path):
    old = "# head\n# result (netshrink bench transformer, 2026-11-30): old figures\n[finetune]\nepochs = 0\n"
    (tmp_path / "a.toml").write_text(old)
    (tmp_path / "b.toml").write_text(old)
    ctx = SimpleNamespace(quick=False, rows=[dict(label="recipes/a.toml", date="2026-12-02", **ROW),
                                             dict(label="recipes/b.toml", **ROW)])
    write_recipe_results(ctx, tmp_path)
    a = (tmp_path / "a.toml").read_text().splitlines()
    assert a[1] == ("# result (netshrink bench transformer, 2026-12-02): mean cos 0.9945, min 0.954, top-5 0.919, "
                    "16.29 MB (5.6x), x1.52 b1 / x1.58 b64, int8 static fbgemm x37")
    assert a[0] == "# head" and a[2:] == ["[finetune]", "epochs = 0"]
    assert (tmp_path / "b.toml").read_text() == old
