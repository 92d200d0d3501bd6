"""Sequences: encoding in any alphabet/layout, centred resizing, FASTA/BED reading, N handling."""

import numpy as np
import pysam
import pytest

from deepmr_kipoi import sequences


def test_one_hot_decode_roundtrip_with_n_and_lowercase():
    x = sequences.one_hot(["ACGTN", "acgtr"])
    assert x.shape == (2, 5, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, :4], np.eye(4))
    np.testing.assert_array_equal(x[:, 4], 0)  # N and IUPAC R are all-zero columns
    np.testing.assert_array_equal(x[0], x[1])
    assert sequences.decode(x) == ["ACGTN", "ACGTN"]
    np.testing.assert_array_equal(sequences.is_n(x), [[0, 0, 0, 0, 1]] * 2)


def test_one_hot_other_alphabet_and_reorder():
    agct = sequences.one_hot("ACGT", alphabet="AGCT")[0]
    # channel j of AGCT holds base "AGCT"[j]: C (position 1) is channel 2
    np.testing.assert_array_equal(agct.argmax(-1), [0, 2, 1, 3])
    acgt = sequences.one_hot("ACGT")
    np.testing.assert_array_equal(sequences.reorder_alphabet(acgt, "ACGT", "AGCT")[0], agct)
    np.testing.assert_array_equal(sequences.reorder_alphabet(agct, "AGCT", "ACGT"), acgt[0])
    assert sequences.decode(agct, alphabet="AGCT") == ["ACGT"]
    with pytest.raises(ValueError, match="order of the four bases"):
        sequences.one_hot("ACGT", alphabet="ACGU")


def test_one_hot_unequal_lengths_is_an_error():
    with pytest.raises(ValueError, match="different lengths"):
        sequences.one_hot(["ACG", "ACGT"])


@pytest.mark.parametrize(
    "layout,shape",
    [
        ("NLC", (2, 7, 4)),
        ("NCL", (2, 4, 7)),
        ("NC1L", (2, 4, 1, 7)),
        ("NCL1", (2, 4, 7, 1)),
        ("N1LC", (2, 1, 7, 4)),
    ],
)
def test_layouts_roundtrip(layout, shape):
    x = np.random.default_rng(3).random((2, 7, 4))
    y = sequences.to_layout(x, layout)
    assert y.shape == shape
    np.testing.assert_array_equal(sequences.from_layout(y, layout), x)
    # channel 2 at position 5 of sequence 1, addressed in each layout
    index = {
        "NLC": (1, 5, 2),
        "NCL": (1, 2, 5),
        "NC1L": (1, 2, 0, 5),
        "NCL1": (1, 2, 5, 0),
        "N1LC": (1, 0, 5, 2),
    }
    assert y[index[layout]] == x[1, 5, 2]


def test_layout_errors():
    with pytest.raises(ValueError, match="layout must be one of"):
        sequences.to_layout(np.zeros((1, 3, 4)), "LC")
    with pytest.raises(ValueError, match="add a batch axis"):
        sequences.check_onehot(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="hard one-hot"):
        sequences.check_onehot(np.full((1, 3, 4), 0.25))


def test_resize_center_matches_kipoiseq():
    from kipoiseq import Interval

    for start, end, length in [
        (10, 20, 6),
        (10, 21, 6),
        (10, 20, 7),
        (10, 21, 7),
        (0, 3, 10),
        (5, 6, 1000),
    ]:
        ref = Interval("c", start, end).resize(length)
        assert sequences.resize_center(start, end, length) == (ref.start, ref.end)
    s, e = sequences.resize_center(np.array([10, 10]), np.array([20, 21]), 7)
    np.testing.assert_array_equal(s, [11, 12])
    np.testing.assert_array_equal(e - s, 7)


def test_random_sequences_seeded_and_distributed():
    a = sequences.random_sequences(50, 200, probs=(0.1, 0.2, 0.3, 0.4), seed=7)
    b = sequences.random_sequences(50, 200, probs=(0.1, 0.2, 0.3, 0.4), seed=7)
    c = sequences.random_sequences(50, 200, probs=(0.1, 0.2, 0.3, 0.4), seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(a.sum(-1), 1)
    # 10,000 draws: the frequencies are within 5 binomial SDs of the probabilities
    freq = a.mean(axis=(0, 1))
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=5 * np.sqrt(0.25 / 10_000))


@pytest.fixture
def genome(tmp_path):
    rng = np.random.default_rng(1)
    chroms = {
        "chr1": "".join(rng.choice(list("ACGT"), 300)),
        "chr2": "".join(rng.choice(list("acgtN"), 120)),
    }
    fasta = tmp_path / "genome.fa"
    with open(fasta, "w") as fh:
        for name, seq in chroms.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                fh.write(seq[i : i + 60] + "\n")
    pysam.faidx(str(fasta))
    return fasta, chroms


def test_read_fasta_bed_resizes_and_names(genome, tmp_path):
    fasta, chroms = genome
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t100\t110\tpeakA\nchr2\t50\t60\n# comment\nchr1\t200\t221\t.\n")
    ids, x = sequences.read_fasta_bed(fasta, bed, length=20)
    assert ids == ["peakA", "chr2:45-65", "chr1:201-221"]
    assert x.shape == (3, 20, 4)
    expected = [chroms["chr1"][95:115], chroms["chr2"][45:65].upper(), chroms["chr1"][201:221]]
    assert sequences.decode(x) == expected
    np.testing.assert_array_equal(sequences.is_n(x[1]), [c == "N" for c in expected[1]])


def test_read_fasta_bed_sampling_is_seeded(genome, tmp_path):
    fasta, _ = genome
    bed = tmp_path / "many.bed"
    bed.write_text("".join(f"chr1\t{s}\t{s + 10}\n" for s in range(20, 280, 10)))
    ids1, x1 = sequences.read_fasta_bed(fasta, bed, length=10, n=5, seed=3)
    ids2, x2 = sequences.read_fasta_bed(fasta, bed, length=10, n=5, seed=3)
    ids3, _ = sequences.read_fasta_bed(fasta, bed, length=10, n=5, seed=4)
    assert ids1 == ids2 and ids1 != ids3 and len(ids1) == 5
    np.testing.assert_array_equal(x1, x2)
    starts = [int(i.split(":")[1].split("-")[0]) for i in ids1]
    assert starts == sorted(starts)  # BED order kept
    with pytest.raises(ValueError, match="exceeds"):
        sequences.read_fasta_bed(fasta, bed, length=10, n=1000)


def test_read_fasta_bed_errors_name_the_interval(genome, tmp_path):
    fasta, _ = genome
    off = tmp_path / "off.bed"
    off.write_text("chr1\t280\t290\n")
    with pytest.raises(ValueError, match=r"chr1:280-290 .*runs off chr1"):
        sequences.read_fasta_bed(fasta, off, length=50)
    unknown = tmp_path / "unknown.bed"
    unknown.write_text("chrX\t10\t20\n")
    with pytest.raises(ValueError, match=r"chrX:10-20: chromosome 'chrX' is not in"):
        sequences.read_fasta_bed(fasta, unknown, length=10)
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\tten\t20\n")
    with pytest.raises(ValueError, match="line 1"):
        sequences.read_fasta_bed(fasta, bad, length=10)


def test_read_fasta_crop_and_pad(tmp_path):
    path = tmp_path / "seqs.fa"
    path.write_text(">a\nACGTACGTAC\n>b\nGGG\n")
    ids, x = sequences.read_fasta(path, length=6)
    assert ids == ["a", "b"]
    # crop: centre of (0, 10) is 5, start 5 - 3 = 2; pad: (0, 3) -> start 2 - 3 = -1
    assert sequences.decode(x) == ["GTACGT", "NGGGNN"]
    with pytest.raises(ValueError, match="different lengths"):
        sequences.read_fasta(path)
