"""FASTA/BED input hygiene: stale indexes, IUPAC letters, duplicated intervals, read-only folders."""

import logging
import os
import time

import numpy as np
import pysam
import pytest

from deepmr_kipoi import sequences
from deepmr_kipoi.errors import DeepMRInputError

GENOME = {"chr1": "ACGT" * 30 + "GGCCAATT" * 10, "chr2": "TTGCA" * 40}


def _write_fasta(path, records, width):
    with open(path, "w") as fh:
        for name, seq in records.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i : i + width] + "\n")


def _bed(path, rows):
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


def test_stale_index_is_rebuilt_and_sequences_are_right(tmp_path):
    fa = tmp_path / "g.fa"
    _write_fasta(fa, GENOME, 60)
    pysam.faidx(str(fa))
    old = (tmp_path / "g.fa.fai").read_text()
    time.sleep(0.01)
    # same names, other line width: the old index now points into line breaks
    _write_fasta(fa, GENOME, 13)
    os.utime(tmp_path / "g.fa.fai", (time.time() - 100, time.time() - 100))
    bed = _bed(tmp_path / "r.bed", [("chr1", 40, 60), ("chr2", 100, 120)])
    ids, x = sequences.read_fasta_bed(fa, bed, length=20)
    assert sequences.decode(x) == [GENOME["chr1"][40:60], GENOME["chr2"][100:120]]
    assert (tmp_path / "g.fa.fai").read_text() != old


def test_index_that_does_not_fit_the_file_is_rebuilt_even_if_newer(tmp_path):
    fa = tmp_path / "g.fa"
    _write_fasta(fa, {"chr1": GENOME["chr1"] * 3}, 60)
    pysam.faidx(str(fa))
    _write_fasta(fa, {"chr1": GENOME["chr1"]}, 60)  # shorter file, index says longer
    os.utime(fa, (time.time() - 100, time.time() - 100))
    bed = _bed(tmp_path / "r.bed", [("chr1", 0, 10)])
    ids, x = sequences.read_fasta_bed(fa, bed, length=10)
    assert sequences.decode(x) == [GENOME["chr1"][:10]]


def test_iupac_letters_are_refused_or_read_as_n(tmp_path):
    fa = tmp_path / "s.fa"
    fa.write_text(">a\nACGTRACGTN\n>b\nACGTACGTAC\n")
    with pytest.raises(DeepMRInputError, match=r"sequence a .*'R'.*--iupac n"):
        sequences.read_fasta(fa)
    ids, x = sequences.read_fasta(fa, iupac="n")
    assert sequences.is_n(x)[0].tolist() == [False] * 4 + [True] + [False] * 4 + [True]
    g = tmp_path / "g.fa"
    _write_fasta(g, {"chr1": "ACGTYACGTA" * 4}, 20)
    with pytest.raises(DeepMRInputError, match="'Y'"):
        sequences.read_fasta_bed(g, _bed(tmp_path / "r.bed", [("chr1", 0, 10)]), length=10)


def test_duplicated_intervals_are_dropped_with_a_warning(tmp_path, caplog):
    fa = tmp_path / "g.fa"
    _write_fasta(fa, GENOME, 60)
    rows = [
        ("chr1", 10, 30, "p1"),
        ("chr1", 10, 30, "p1_again"),
        ("chr1", 12, 28, "same_centre"),
        ("chr2", 5, 25, "p2"),
    ]
    bed = _bed(tmp_path / "r.bed", rows)
    with caplog.at_level(logging.WARNING):
        ids, x = sequences.read_fasta_bed(fa, bed, length=20)
    assert ids == ["p1", "p2"]
    assert "2 interval(s) repeat" in caplog.text
    ids, _ = sequences.read_fasta_bed(fa, bed, length=20, duplicates="keep")
    assert len(ids) == 4


def test_genome_in_a_read_only_folder_gets_its_index_elsewhere(tmp_path, monkeypatch):
    fa = tmp_path / "ro" / "g.fa"
    fa.parent.mkdir()
    _write_fasta(fa, GENOME, 60)
    real_access = os.access
    # the folder is read-only for this user (root ignores file modes, so the test says it)
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if str(p) == str(fa.parent) else real_access(p, mode)
    )
    bed = _bed(tmp_path / "r.bed", [("chr2", 0, 20)])
    ids, x = sequences.read_fasta_bed(fa, bed, length=20, index_dir=tmp_path / "idx")
    assert sequences.decode(x) == [GENOME["chr2"][:20]]
    assert not (fa.parent / "g.fa.fai").exists()
    assert len(list((tmp_path / "idx").glob("g.fa.*.fai"))) == 1


def test_not_a_fasta_is_one_line_error(tmp_path):
    junk = tmp_path / "g.fa"
    junk.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(DeepMRInputError, match="cannot index"):
        sequences.read_fasta_bed(junk, _bed(tmp_path / "r.bed", [("chr1", 0, 10)]), length=10)
