"""Bad input to `gradinv fl simulate`: each case ends in exit code 2 and one error line and
leaves nothing behind (bad_input.py says what is checked; conftest.py checks it)."""
import pytest

from bad_input import HUGE, case_id

MINIMUM = 25  # this table's size guard (test_main_bad_input.py checks every table's)

# (base, extra arguments, fragment of the one error line; None: an argparse error)
CASES = [
    # -- fl simulate ------------------------------------------------------------------------
    ("fl", ["--rounds", "0"], "rounds must be"),
    ("fl", ["--device", "tpu"], "unknown device 'tpu'"),
    ("fl", ["--device", "cuda:99"], "device 'cuda:99' requested"),
    ("fl", ["--rounds", "-1"], "rounds must be"),
    ("fl", ["--rounds", HUGE], "rounds must be"),
    ("fl", ["--clients", "0"], "num_clients must be"),
    ("fl", ["--clients", HUGE], "num_clients must be"),
    ("fl", ["--clients", "3000"], "3000 clients"),
    ("fl", ["--clients-per-round", "0"], "clients_per_round must be"),
    ("fl", ["--clients-per-round", "3"], "clients_per_round must be"),
    ("fl", ["--batch-size", "0"], "batch_size must be"),
    ("fl", ["--batch-size", "-1"], "batch_size must be"),
    ("fl", ["--test-images", "0"], "test_images must be"),
    ("fl", ["--test-images", "501"], "test_images 501 is more than"),
    ("fl", ["--test-images", HUGE], "test_images must be"),
    ("fl", ["--image-size", "3"], "image_size must be"),
    ("fl", ["--image-size", HUGE], "image_size must be"),
    ("fl", ["--channels", "0"], "channels must be"),
    ("fl", ["--channels", HUGE], "channels must be"),
    ("fl", ["--seed", "-1"], "seed must be"),
    ("fl", ["--seed", HUGE], "seed must be"),
    ("fl", ["--rounds", "1.5"], None),
    ("fl", ["--width", "8"], "LeNet has a fixed width"),
    ("fl", ["--model", "convnet", "--width", "0"], "width must be"),
    ("fl", ["--model", "convnet", "--width", HUGE], "width must be"),
    ("fl", ["--partition", "dirichlet", "--alpha", "0"], "alpha must be"),
    ("fl", ["--partition", "dirichlet", "--alpha", "nan"], "alpha must be"),
    ("fl", ["--partition", "dirichlet", "--alpha", "inf"], "alpha must be"),
    ("fl", ["--partition", "dirichlet", "--alpha", "-1"], "alpha must be"),
    ("fl", ["--alpha", "0.5"], "--alpha only applies to --partition dirichlet"),
    ("fl", ["--classes-per-client", "2"], "--classes-per-client only applies to --partition"),
    ("fl", ["--partition", "classes", "--classes-per-client", "0"], "classes_per_client must"),
    ("fl", ["--partition", "classes", "--classes-per-client", "11"], "classes_per_client must"),
    ("fl", ["--server-lr", "0"], "server_lr must be"),
    ("fl", ["--server-lr", "nan"], "server_lr must be"),
    ("fl", ["--server-lr", "inf"], "server_lr must be"),
    ("fl", ["--server-lr", "-1"], "server_lr must be"),
    ("fl", ["--update", "fedavg", "--server-lr", "0.1"], "--server-lr only applies to"),
    ("fl", ["--local-lr", "0.1"], "only apply to --update fedavg"),
    ("fl", ["--local-epochs", "2"], "only apply to --update fedavg"),
    ("fl", ["--update", "fedavg", "--local-lr", "nan"], "error: --local-lr must be"),
    ("fl", ["--update", "fedavg", "--local-epochs", HUGE], "error: --local-epochs must be"),
    ("fl", ["--update", "fedavg", "--local-batch-size", "0"], "error: --local-batch-size must be"),
    ("fl", ["--unknown-hparams"], "--unknown-hparams only applies to --update fedavg"),
    ("fl", ["--model", "alexnet"], "unknown model"),
    ("fl", ["--dataset", "digits"], "no separate train and test split"),
    ("fl", ["--dataset", "nope"], "unknown dataset"),
    ("fl", ["--dataset", "mnist"], "needs --data-dir"),
    ("fl", ["--dataset", "mnist", "--data-dir", "{file}"], "is a file"),
    ("fl", ["--dataset", "mnist", "--data-dir", "{emptydir}"], "missing"),
    ("fl", ["--data-dir", "{emptydir}"], "reads no --data-dir"),
    ("fl", ["--init-scheme", "xavier"], None),
    ("fl", ["--partition", "random"], None),
    ("fl", ["--record", "{file}"], "is not a folder"),
    ("fl", ["--record", "{not_record}"], "has no record.json"),
    ("fl", ["--record", "{rec}", "--seed", "1"], "written with other settings"),
    ("fl", ["--record", "{rec}", "--model", "convnet"],
     "federation.model: recorded 'lenet', now 'convnet'"),
    ("fl", ["--record", "{rec_manifest_garbage}"], "is not a JSON object"),
    ("fl", ["--record", "/proc/gradinv-bad-input/rec"], "cannot write results under"),
    # -- settings that would say one thing and do another (issue 19) ------------------------
    ("fl", ["--bn-stats"], "has no BatchNorm layers"),
    ("fl", ["--batch-size", "5000"], "batch_size 5000 is more than any client holds"),
    ("fl", ["--rounds", "2", "--clients-per-round", "2", "--defense",
            "dp-noise:epsilon=1,max_norm=1,rounds=1"], "rounds=1 calibrates epsilon for 1"),
    ("fl", ["--rounds", "2", "--clients-per-round", "2", "--defense", "dpsgd:epsilon=1,steps=1"],
     "steps=1 calibrates epsilon for 1"),
    ("fl", ["--unknown-count"], "add --unknown-labels"),
]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input_gives_one_line_and_leaves_nothing(case, check_bad_input):
    check_bad_input(case)
