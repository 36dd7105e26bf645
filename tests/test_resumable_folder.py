"""Work that survives a failed try of a Snakemake job: the job's declared output is deleted before every try, so
the samplers write into `imagenet_t2i.io.resumable_folder` (``.<name>.partial`` beside it) and rename at the end."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imagenet_t2i.io import resumable_folder

# Each try writes the items it does not find (one file each) and logs them; the first try fails after two items.
RULE = '''
rule sample:
    output: directory("out/images")
    retries: 1
    resources: attempt=lambda wildcards, attempt: attempt
    shell: "{python} try.py {{output}} {{resources.attempt}}"
'''
SCRIPT = """
import sys
from pathlib import Path
from imagenet_t2i.io import resumable_folder
out, attempt = sys.argv[1], int(sys.argv[2])
with resumable_folder(out) as work:
    for i in range(5):
        if not (work / str(i)).exists():
            with open("tries.log", "a") as log:
                log.write(f"{attempt} {i}\\n")
            (work / str(i)).write_text(str(attempt))
        if attempt == 1 and i == 1:
            raise SystemExit("killed")
"""


def test_a_retried_snakemake_job_keeps_what_its_failed_try_wrote(tmp_path):
    # an earlier output, forced to rerun: Snakemake deletes it before each try; the partial folder stays
    (tmp_path / "out" / "images").mkdir(parents=True)
    (tmp_path / "out" / "images" / "stale").write_text("")
    (tmp_path / "Snakefile").write_text(RULE.format(python=sys.executable))
    (tmp_path / "try.py").write_text(SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-c1", "--forcerun", "sample", "--directory",
                           str(tmp_path)], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tries = (tmp_path / "tries.log").read_text().split("\n")[:-1]
    assert tries == ["1 0", "1 1", "2 2", "2 3", "2 4"]  # the retry wrote only the three items missing
    out = tmp_path / "out" / "images"
    written = {p.name: p.read_text() for p in out.iterdir() if p.name != ".snakemake_timestamp"}
    assert written == {"0": "1", "1": "1", "2": "2", "3": "2", "4": "2"}
    assert not (tmp_path / "out" / ".images.partial").exists()


def test_resumable_folder_replaces_the_output_only_on_success(tmp_path):
    final = tmp_path / "images"
    final.mkdir()
    (final / "old").write_text("old")
    with pytest.raises(RuntimeError), resumable_folder(final) as work:
        (work / "new").write_text("new")
        raise RuntimeError("killed")
    assert (final / "old").exists() and (tmp_path / ".images.partial" / "new").exists()
    with resumable_folder(final) as work:
        assert (work / "new").exists()  # the failed try's work, found again
    assert sorted(p.name for p in final.iterdir()) == ["new"] and not Path(work).exists()
