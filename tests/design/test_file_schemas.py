"""dmixed.design.file_schemas: the files of a multi-file input a column problem is in."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dmixed.design.file_schemas import (
    file_columns,
    files_in_message,
    files_unlike_others,
    quoted_names,
)


def _frame(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({"g": np.arange(n) % 2, "y": np.linspace(0, 1, n), "h": 1})


def test_parquet_files_lacking_a_column_or_holding_text_are_named(tmp_path):
    files = [str(tmp_path / f"{k}.parquet") for k in "abcd"]
    _frame().to_parquet(files[0], index=False)
    _frame().drop(columns="h").to_parquet(files[1], index=False)
    _frame().astype({"y": str}).to_parquet(files[2], index=False)
    _frame().to_parquet(files[3], index=False)
    lines = files_unlike_others(files, "parquet", ["y", "h", "not a column"])
    assert len(lines) == 2
    assert lines[0].startswith(f"{files[2]}: column 'y' holds text (")
    assert lines[0].endswith("where the other files hold numbers")
    assert lines[1] == f"{files[1]}: no column 'h'"
    assert files_unlike_others(files[:1] + files[3:], "parquet", ["y", "h"]) == []
    text = files_in_message(files, "parquet", "a partition has no column(s) ['h']", shown=1)
    assert text == f"; in {files[1]}: no column 'h'"
    assert files_in_message(files[1:2], "parquet", "no column(s) ['h']") == ""


def test_csv_files_are_read_by_their_header_and_first_rows(tmp_path):
    files = [str(tmp_path / f"{k}.csv") for k in "ab"]
    _frame().to_csv(files[0], index=False)
    _frame().assign(y="text").drop(columns="h").to_csv(files[1], index=False)
    assert set(file_columns(files[1], "csv")) == {"g", "y"}
    lines = files_unlike_others(files, "csv", ["y", "h"])
    # two files: the first one's kind is the usual one
    assert len(lines) == 2 and lines[1] == f"{files[1]}: no column 'h'"
    assert lines[0].startswith(f"{files[1]}: column 'y' holds text (")
    assert lines[0].endswith("where the other files hold numbers")
    unreadable = str(tmp_path / "missing.csv")
    assert files_unlike_others([unreadable, *files[:1]], "csv", ["y"]) == []


def test_a_csv_file_without_rows_has_no_types_to_compare(tmp_path):
    """A header-only CSV file (pandas reads its columns as text) first beside a file of
    numbers named the file of numbers as holding numbers "where the other files hold
    text"; a file without rows now declares its columns but no types."""
    files = [str(tmp_path / f"{k}.csv") for k in "ab"]
    _frame().head(0).to_csv(files[0], index=False)
    _frame().to_csv(files[1], index=False)
    assert file_columns(files[0], "csv") == {"g": None, "y": None, "h": None}
    assert files_unlike_others(files, "csv", ["g", "y"]) == []
    _frame().head(0).drop(columns="h").to_csv(files[0], index=False)
    assert files_unlike_others(files, "csv", ["h"]) == [f"{files[0]}: no column 'h'"]


def test_quoted_names_in_order_once_each():
    message = "column 'y' holds text (such as '3.4') ... pd.to_numeric(data['y']); no ['h']"
    assert quoted_names(message) == ["y", "3.4", "h"]


def test_blank_rows_are_told_from_rows_of_empty_fields(tmp_path):
    """Blank lines (``\\r`` alone in a CRLF file too), not a row of empty fields
    (``,,``) nor a blank line inside a quoted field, numbered as read_csv numbers rows
    that keep blank lines; none where the header is not the first line."""
    from dmixed.design.file_schemas import blank_rows

    path = tmp_path / "b.csv"
    path.write_bytes(b'a,b,c\r\n1,2,3\r\n\r\n,,\r\n"x\r\n\r\ny",2,3\r\n   \r\n\r\n4,5,6')
    rows = pd.read_csv(path, dtype=object, skip_blank_lines=False, na_filter=False)
    assert rows["a"].tolist() == ["1", "", "", "x\r\n\r\ny", "   ", "", "4"]
    assert blank_rows(str(path), None).tolist() == [1, 5]
    assert blank_rows(str(path), None, {"skipinitialspace": True}).tolist() == [1, 4, 5]
    assert blank_rows(str(path), None, {"quoting": 3}) is not None
    lead = tmp_path / "lead.csv"
    lead.write_text("\na,b\n1,2\n")
    assert blank_rows(str(lead), None) is None


def test_blank_rows_give_up_on_a_quote_inside_an_unquoted_field(tmp_path):
    """A quote inside an unquoted field (``5"x``) is text to read_csv; counted as the
    start of a quoted field it would hide the blank lines after it, so no rows are
    told (None) rather than wrong ones; quotes around fields and doubled quotes in
    them are followed."""
    from dmixed.design.file_schemas import blank_rows

    stray = tmp_path / "stray.csv"
    stray.write_text('a,b\n5"x,1\n\n2,3\n\n4,5\n')
    assert pd.read_csv(stray).shape[0] == 3
    assert blank_rows(str(stray), None) is None
    fine = tmp_path / "fine.csv"
    fine.write_text('a,b\n"5""x",1\n\n"2\n\n",3\n\n4,5\n')
    rows = pd.read_csv(fine, dtype=object, skip_blank_lines=False, na_filter=False)
    assert rows["a"].tolist() == ['5"x', "", "2\n\n", "", "4"]
    assert blank_rows(str(fine), None).tolist() == [1, 3]
    semi = tmp_path / "semi.csv"
    semi.write_text('a;b\n"x";1\n\n2;"3"\n')
    assert blank_rows(str(semi), None, {"sep": ";"}).tolist() == [1]
