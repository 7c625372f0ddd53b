"""The Python front doors refuse a wrong kind of argument with a GradinvError naming it (not
an AttributeError or TypeError from deep inside)."""
import pytest

import gradinv
from gradinv.audit import AuditConfig, run_audit, run_config
from gradinv.audit.record import run_leakage_audit
from gradinv.audit.update import run_record_audit
from gradinv.checks import GradinvError
from gradinv.fl import simulate

CASES = [
    (lambda tmp: run_config({"attack": "gi"}), "config must be an AuditConfig"),
    (lambda tmp: run_audit({"attack": "gi"}, out=tmp), "config must be an AuditConfig"),
    (lambda tmp: AuditConfig(attack=["gi"]), "attack must be a name"),
    (lambda tmp: AuditConfig(attack=3), "attack must be a name"),
    (lambda tmp: gradinv.audit(out=3), "out must be a folder path"),
    (lambda tmp: gradinv.audit(hyperparameters=[1]), "hyperparameters must be a dict"),
    (lambda tmp: gradinv.audit(attack_settings=[1]), "attack_settings must be a dict"),
    (lambda tmp: gradinv.audit(modle="lenet"), "takes no setting 'modle'; did you mean 'model'"),
    (lambda tmp: gradinv.audit(itertions=5), "did you mean 'iterations'"),
    (lambda tmp: gradinv.audit(quiet=True), "audit\\(\\) takes no setting 'quiet'"),
    (lambda tmp: simulate({"rounds": 1}, tmp), "config must be a FederationConfig"),
    (lambda tmp: run_record_audit({"record": "r"}, out=tmp), "config must be a RecordAuditConfig"),
    (lambda tmp: run_leakage_audit({"record": "r"}, out=tmp), "config must be a RecordAudit"),
]


@pytest.mark.parametrize("call, fragment", CASES, ids=[c[1] for c in CASES])
def test_a_wrong_kind_of_argument_is_named(call, fragment, tmp_path):
    with pytest.raises(GradinvError, match=fragment):
        call(tmp_path / "out")
    assert not (tmp_path / "out").exists()
