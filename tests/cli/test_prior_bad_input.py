"""Bad input to `gradinv prior train` and `gradinv prior learn` (GIML): each case ends in exit
code 2 and one error line and leaves nothing behind (bad_input.py says what is checked;
conftest.py checks it)."""
import pytest

from bad_input import HUGE, case_id

MINIMUM = 26  # this table's size guard (test_main_bad_input.py checks every table's)

# (base, extra arguments, fragment of the one error line; None: an argparse error)
CASES = [
    # -- prior train ------------------------------------------------------------------------
    ("train", ["--epochs", "0"], "epochs must be"),
    ("train", ["--device", "tpu"], "unknown device 'tpu'"),
    ("train", ["--device", "cuda:99"], "device 'cuda:99' requested"),
    ("train", ["--epochs", HUGE], "epochs must be"),
    ("train", ["--batch-size", "0"], "batch_size must be"),
    ("train", ["--batch-size", "17"], "fewer images than one batch"),
    ("train", ["--lr", "0"], "lr must be"),
    ("train", ["--lr", "nan"], "lr must be"),
    ("train", ["--lr", "inf"], "lr must be"),
    ("train", ["--lr", "-1"], "lr must be"),
    ("train", ["--latent-dim", "0"], "latent_dim must be"),
    ("train", ["--latent-dim", HUGE], "latent_dim must be"),
    ("train", ["--width", "0"], "width must be"),
    ("train", ["--width", HUGE], "width must be"),
    ("train", ["--image-size", "48"], None),
    ("train", ["--max-images", "0"], "max_images must be"),
    ("train", ["--max-images", "3000"], "max_images 3000 is more than"),
    ("train", ["--max-images", HUGE], "max_images must be"),
    ("train", ["--seed", "-1"], "seed must be"),
    ("train", ["--dataset", "nope"], "unknown dataset"),
    ("train", ["--dataset", "digits"], "no separate train and test split"),
    ("train", ["--dataset", "mnist"], "needs --data-dir"),
    ("train", ["--dataset", "mnist", "--data-dir", "{emptydir}"], "missing"),
    ("train", ["--data-dir", "{emptydir}"], "reads no --data-dir"),
    ("train", ["--out", "{file}"], "is not a folder"),
    ("train", ["--out", "/proc/gradinv-bad-input/prior"], "cannot write results under"),
    ("train", ["--out", "{corrupt_checkpoint}"], "not a readable torch file"),
    ("train", ["--out", "{foreign_checkpoint}"], "written with other settings"),
    # -- prior learn ------------------------------------------------------------------------
    ("learn", ["--record", "{missing}"], "no record at"),
    ("learn", ["--record", "{emptydir}"], "is empty"),
    ("learn", ["--record", "{file}"], "not a directory"),
    ("learn", ["--record", "{rec_missing_update}"], "is missing"),
    ("learn", ["--record", "{rec_tampered_update}"], "does not match its sha256"),
    ("learn", ["--record", "{rec_no_rounds}"], "at least one observed update"),
    ("learn", ["--latent-iterations", "0"], "latent_iterations must be"),
    ("learn", ["--latent-iterations", HUGE], "latent_iterations must be"),
    ("learn", ["--latent-iterations", "1.5"], None),
    ("learn", ["--adapt-iterations", "0"], "adapt_iterations must be"),
    ("learn", ["--steps", "0"], "steps must be"),
    ("learn", ["--steps", HUGE], "steps must be"),
    ("learn", ["--width", "0"], "width must be"),
    ("learn", ["--width", HUGE], "width must be"),
    ("learn", ["--latent-dim", HUGE], "latent_dim must be"),
    ("learn", ["--image-size", "48"], "32 or 64"),
    ("learn", ["--image-size", "16"], "image_size"),
    ("learn", ["--channels", "0"], "channels must be"),
    ("learn", ["--latent-lr", "nan"], "latent_lr must be"),
    ("learn", ["--adapt-lr", "0"], "adapt_lr must be"),
    ("learn", ["--meta-lr", "inf"], "meta_lr must be"),
    ("learn", ["--tv", "-1"], "tv must be"),
    ("learn", ["--latent-norm", "nan"], "latent_norm must be"),
    ("learn", ["--restarts", "0"], "restarts must be"),
    ("learn", ["--restarts", HUGE], "restarts must be"),
    ("learn", ["--sample-every", "0"], "sample_every must be"),
    ("learn", ["--checkpoint-every", "-1"], "checkpoint_every must be"),
    ("learn", ["--seed", "-1"], "seed must be"),
    ("learn", ["--device", "tpu"], "unknown device"),
    ("learn", ["--out", "{file}"], "is not a folder"),
    ("learn", ["--out", "/proc/gradinv-bad-input/giml"], "cannot write results under"),
    ("learn", ["--out", "{corrupt_checkpoint}"], "is not a readable torch file"),
]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input_gives_one_line_and_leaves_nothing(case, check_bad_input):
    check_bad_input(case)
