"""Paper-scale benchmark vocabulary shipped with the package, and the check of the downloaded DPG question file."""
from __future__ import annotations

import fnmatch
import json
import tomllib
from collections import Counter

import pytest

from imagenet_t2i.evaluation.dpg.paper_prompts import (DATA as DPG_DATA, DPG_CSV_BLOB, check_dpg_csv, dpg_prompts,
                                                       git_blob_id)
from imagenet_t2i.evaluation.geneval.paper_prompts import (DATA as GENEVAL_DATA, GENEVAL_METADATA_SHA256,
                                                           geneval_object_names, paper_geneval_prompts)
from imagenet_t2i.evaluation.geneval.prompts import write_prompts
from imagenet_t2i.io import sha256_file

from .conftest import FIXTURES, REPO


def test_paper_geneval_metadata_is_the_official_file(tmp_path):
    out = tmp_path / "evaluation_metadata.jsonl"
    write_prompts(out, paper_geneval_prompts())
    assert sha256_file(out) == GENEVAL_METADATA_SHA256  # the official file's hash (eval-spec), no fixture needed
    assert Counter(json.loads(line)["tag"] for line in out.read_text().splitlines()) == {
        "single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100, "color_attr": 100}
    assert out.read_bytes() == (FIXTURES / "geneval" / "evaluation_metadata.jsonl").read_bytes()


def test_shipped_files_are_the_fixtures():
    names = geneval_object_names()
    assert len(names) == 80 and names[0] == "person" and names[-1] == "toothbrush" and "computer mouse" in names
    data = {"geneval": GENEVAL_DATA, "dpg": DPG_DATA}
    for bench, name in (("geneval", "object_names.txt"), ("geneval", "LICENSE"), ("dpg", "prompts.jsonl"),
                        ("dpg", "LICENSE")):
        assert (data[bench] / name).read_bytes() == (FIXTURES / bench / name).read_bytes(), (bench, name)
    assert "MIT License" in (GENEVAL_DATA / "LICENSE").read_text()
    assert "Apache License" in (DPG_DATA / "LICENSE").read_text()


def test_dpg_prompts():
    rows = dpg_prompts()
    assert len(rows) == 1065 and len({r["item_id"] for r in rows}) == 1065
    assert all(set(r) == {"item_id", "source", "prompt"} and r["prompt"] == r["prompt"].strip() and r["prompt"]
               for r in rows)
    counts = Counter(r["source"] for r in rows)
    assert counts["partiprompts"] == 324 and counts["COCOval"] == 100 and sum(counts.values()) == 1065
    assert "partiprompts97" in {r["item_id"] for r in rows}


@pytest.mark.parametrize("package, data", [("imagenet_t2i.evaluation.geneval", GENEVAL_DATA),
                                           ("imagenet_t2i.evaluation.dpg", DPG_DATA)])
def test_package_data_covers_the_data_folder(package, data):
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][package]
    files = [str(p.relative_to(data.parent)) for p in data.rglob("*") if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files), files


def test_git_blob_id_known_vectors():
    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # `git hash-object /dev/null`
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_check_dpg_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"ELLA.*dpg_bench.*{DPG_CSV_BLOB}"):
        check_dpg_csv(tmp_path / "dpg_bench.csv")
    path = tmp_path / "dpg_bench.csv"
    path.write_bytes(b"item_id,text\r\nx,y\r\n")
    blob = git_blob_id(path.read_bytes())
    with pytest.raises(ValueError, match=f"{blob}.*ELLA repository's dpg_bench folder.*{DPG_CSV_BLOB}"):
        check_dpg_csv(path)
    assert check_dpg_csv(path, expected=blob) == blob
