"""Results as a tidy DataFrame: the CSV's exact bytes, the Markdown pivots, several results files in one report."""

import math

import pandas as pd
import pytest

from evaluation.__main__ import main
from evaluation.report import FIELDS, beside_paper, combine_results, markdown_table, read_results, write_results


def row(method, mask_set, metric, value, n=8, bin="total", dataset="places"):
    return {"dataset": dataset, "mask_set": mask_set, "method": method, "bin": bin, "metric": metric,
            "value": value, "n_images": n}


def run(method, mask_set, fid, lpips, ssim, psnr, n=8, missing=None, dataset="places"):
    rows = [row(method, mask_set, m, v, n, dataset=dataset)
            for m, v in (("fid", fid), ("lpips", lpips), ("ssim", ssim), ("psnr", psnr))]
    rows.append(row(method, mask_set, "lpips_std", 0.01, n, dataset=dataset))  # not in the table
    rows.append(row(method, mask_set, "fid", 99.0, 1, bin="0-10%", dataset=dataset))  # a bin: not in the table
    if missing is not None:
        rows.append(row(method, mask_set, "n_missing", float(missing), n, dataset=dataset))
    return rows


HEAD = ("| method | places random_thick_256 FID | places random_thick_256 LPIPS | places random_thick_256 SSIM | "
        "places random_thick_256 PSNR | places random_thin_512 FID | places random_thin_512 LPIPS | "
        "places random_thin_512 SSIM | places random_thin_512 PSNR | n |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n")


def test_results_csv_is_what_csv_dictwriter_wrote_and_round_trips_byte_for_byte(tmp_path):
    rows = [row("lama", "random_thin_512", "lpips", 0.8480089157819748),
            row("lama", "random_thin_512", "fid", float("nan"), n=1, bin="0-10%"),
            row("lama", "random_thin_512", "psnr", 100.0),
            row("lama", "random_thin_512", "ssim", 1 / 3),
            row("lama", "random_thin_512", "odd", 1e-05),
            row("lama", "random_thin_512", "odd", float("inf")),
            row("lama", "random_thin_512", "odd", -0.0),
            row('a,b "c"', "random_thin_512", "fid", 2.0, n=3)]
    expected = ("dataset,mask_set,method,bin,metric,value,n_images\r\n"
                "places,random_thin_512,lama,total,lpips,0.8480089157819748,8\r\n"
                "places,random_thin_512,lama,0-10%,fid,nan,1\r\n"
                "places,random_thin_512,lama,total,psnr,100.0,8\r\n"
                "places,random_thin_512,lama,total,ssim,0.3333333333333333,8\r\n"
                "places,random_thin_512,lama,total,odd,1e-05,8\r\n"
                "places,random_thin_512,lama,total,odd,inf,8\r\n"
                "places,random_thin_512,lama,total,odd,-0.0,8\r\n"
                'places,random_thin_512,"a,b ""c""",total,fid,2.0,3\r\n')
    first, second = tmp_path / "a" / "results.csv", tmp_path / "b" / "results.csv"
    write_results(first, rows)
    assert first.read_bytes() == expected.encode()

    df = read_results(first)
    assert isinstance(df, pd.DataFrame) and tuple(df.columns) == FIELDS
    assert df["value"].tolist()[0] == 0.8480089157819748 and math.isnan(df["value"].tolist()[1])
    assert df["n_images"].tolist() == [8, 1, 8, 8, 8, 8, 8, 3]
    write_results(second, df)
    assert second.read_bytes() == first.read_bytes()
    write_results(second, read_results(second).to_dict("records"))  # merged into itself: nothing changes
    assert second.read_bytes() == first.read_bytes()


def test_a_new_score_replaces_its_run_and_comes_after_the_old_rows(tmp_path):
    path = tmp_path / "results.csv"
    write_results(path, [row("lama", "random_thin_512", "fid", 1.5), row("lama", "random_thin_512", "ssim", 0.5)])
    write_results(path, [row("telea", "random_thin_512", "fid", 3.25)])
    write_results(path, [row("lama", "random_thin_512", "fid", 1.75)])  # re-score: its old rows go
    assert path.read_text() == ("dataset,mask_set,method,bin,metric,value,n_images\n"
                                "places,random_thin_512,telea,total,fid,3.25,8\n"
                                "places,random_thin_512,lama,total,fid,1.75,8\n")


def test_markdown_table_pivots_totals_per_method_and_mask_set():
    rows = (run("lama", "random_thick_256", 2.5, 0.1234, 0.9, 30.456) +
            run("telea", "random_thick_256", float("nan"), 0.2, 0.8, 25.0, n=6) +
            run("lama", "random_thin_512", 1.0, 0.05, 0.95, 33.333))
    expected = HEAD + ("| lama | 2.50 | 0.123 | 0.900 | 30.46 | 1.00 | 0.050 | 0.950 | 33.33 | 8 |\n"
                       "| telea | – | 0.200 | 0.800 | 25.00 | – | – | – | – | 6 |")
    assert markdown_table(pd.DataFrame(rows)) == expected
    assert markdown_table(rows) == expected  # plain rows work too


def test_the_n_column_says_how_many_were_missing():
    rows = (run("lama", "random_thick_256", 2.5, 0.1234, 0.9, 30.456, missing=0) +  # nothing left out: no note
            run("telea", "random_thick_256", 4.0, 0.2, 0.8, 25.0, n=6, missing=2))
    expected = (HEAD.replace(" places random_thin_512 FID | places random_thin_512 LPIPS | "
                             "places random_thin_512 SSIM | places random_thin_512 PSNR |", "")
                .replace("|---|---|---|---|---|---|---|---|---|---|", "|---|---|---|---|---|---|"))
    expected += ("| lama | 2.50 | 0.123 | 0.900 | 30.46 | 8 |\n"
                 "| telea | 4.00 | 0.200 | 0.800 | 25.00 | 6 (2 missing) |")
    assert markdown_table(pd.DataFrame(rows)) == expected


def test_beside_paper_puts_our_runs_after_the_papers_rows_of_that_mask_set():
    rows = run("lama", "random_thin_512", 1.0, 0.05, 0.95, 33.333, n=5)
    lines = beside_paper(pd.DataFrame(rows)).splitlines()
    assert lines[-1] == "| places | random_thin_512 | lama | | 1.00 | 0.050 | ours, 5 images |"
    assert lines[2] == "| Places | narrow | LaMa-Fourier | 27 | 0.63 | 0.090 | paper |"
    assert all(line.endswith("| paper |") and "| narrow |" in line for line in lines[2:-1])


def test_report_combines_several_results_files_and_the_later_file_wins(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_results(a, run("lama", "random_thick_256", 2.5, 0.1234, 0.9, 30.456) +
                  run("telea", "random_thick_256", 4.0, 0.2, 0.8, 25.0, n=6, missing=2))
    write_results(b, run("lama", "random_thick_256", 3.5, 0.125, 0.875, 31.0) +
                  run("lama", "random_thin_512", 1.0, 0.05, 0.95, 33.333))
    combined = combine_results([a, b])
    assert len(combined) == 13 + 12 - 6 and not combined.duplicated(subset=list(FIELDS[:5])).any()
    lama_fid = combined.query("method == 'lama' and mask_set == 'random_thick_256' and metric == 'fid' and "
                              "bin == 'total'")["value"].tolist()
    assert lama_fid == [3.5]  # b.csv came later
    assert combine_results([b, a]).query("method == 'lama' and mask_set == 'random_thick_256' and "
                                         "metric == 'fid' and bin == 'total'")["value"].tolist() == [2.5]

    # a run re-scored in full replaces the whole earlier run, its "missing" note included
    c = tmp_path / "c.csv"
    write_results(c, run("telea", "random_thick_256", 4.5, 0.21, 0.79, 24.0))
    telea = combine_results([a, c]).query("method == 'telea'")
    assert "n_missing" not in set(telea["metric"]) and set(telea.query("bin == 'total'")["n_images"]) == {8}

    out = tmp_path / "report"
    assert main(["report", "--results", str(a), str(b), "--out", str(out), "--quiet"]) == 0
    md = (out / "report.md").read_text()
    assert HEAD + ("| lama | 3.50 | 0.125 | 0.875 | 31.00 | 1.00 | 0.050 | 0.950 | 33.33 | 8 |\n"
                   "| telea | 4.00 | 0.200 | 0.800 | 25.00 | – | – | – | – | 6 (2 missing) |\n") in md
    assert "| places | random_thick_256 | lama | | 3.50 | 0.125 | ours, 8 images |" in md
    assert (out / "fid_by_method.png").stat().st_size > 1000

    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "later file wins" in " ".join(capsys.readouterr().out.split())
