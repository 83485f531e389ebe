"""benchmarks/injection_recovery.py with cosmology-dependent weights and the fast ensemble (issue 15,
item 6): the fit samples omegam and sigma8 beside the seven parameters, at each point's redshift."""
import json

from repo_files import load_module
from test_cosmology_inputs import v2_weights  # noqa: F401  (fixture)


def _script():
    return load_module("benchmarks/injection_recovery.py")


def test_v2_weights_fit_cosmology_with_the_ensemble(v2_weights, tmp_path):  # noqa: F811
    out = tmp_path / "coverage.json"
    rc = _script().main(["--synthetic", "--weights", str(v2_weights), "--n-mocks", "1",
                         "--sampler", "ensemble", "--min-ess", "100", "--covariance", "emulator",
                         "--workdir", str(tmp_path / "work"), "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert {"omegam", "sigma8", "logMmin", "mu_cen"} <= set(result["coverage"])
    for record in result["mocks"]:
        assert 0.0 <= record["redshift"] <= 1.0 and record["converged"]
        assert set(record["truth"]) == set(result["coverage"])
