"""Bad input to `gradinv sweep` (hand-written sweep files): each case ends in exit code 2 and one
error line naming the file and the key, and leaves nothing behind (bad_input.py says what is
checked; conftest.py checks it)."""
import pytest

from bad_input import case_id

MINIMUM = 9  # this table's size guard (test_main_bad_input.py checks every table's)

# (base, extra arguments, fragment of the one error line; None: an argparse error)
CASES = [
    ("sweep", ["{missing}"], "cannot read"),
    ("sweep", ["{sweep_attack_list}"], "sweep_attack_list.toml: grid.attack value 'gi,gias'"),
    ("sweep", ["{sweep_hyper_value}"],
     "sweep_hyper_value.toml (run gi__none__B1__seed0): gi: iterations must"),
    ("sweep", ["{sweep_repeated_seed}"], "sweep_repeated_seed.toml: the grid gives run"),
    ("sweep", ["{sweep_repeated_strength}"], "gives run gi__prune-rate=0.5__B1__seed0 twice"),
    ("sweep", ["{sweep_base_defense}"], "'none' level"),
    ("sweep", ["{sweep_base_defenses_text}"], "[base] defenses must be a list"),
    ("sweep", ["{sweep_settings_of_no_attack}"], "attack_settings names 'giaz'"),
    ("sweep", ["{sweep_hyper_of_no_attack}"], "hyperparameters.latent_iterations: no attack"),
    ("sweep", ["{sweep_threat_key}"], "sweep_threat_key.toml (run gi__none__B1__seed0): "
                                      "unknown setting 'threat.labelz'"),
    ("sweep", ["{sweep_base_scalar}"], "sweep_base_scalar.toml: [base] must be a table"),
    ("sweep", ["{sweep_dp_utility}"], "give rounds = 2 in [grid.defense] so that both use"),
    ("sweep", ["{sweep_dp_utility_counted}"], "rounds=1 calibrates epsilon for 1 release"),
    ("sweep", ["{sweep_attack_list}", "--workers", "0"], "workers must be"),
    ("sweep", ["{sweep_attack_list}", "--workers", "x"], None),
]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input_gives_one_line_and_leaves_nothing(case, check_bad_input):
    check_bad_input(case)
