"""Cluster mode: job ids, argv rewriting, config validation, and real jobs on a local head."""

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from niclip_ray.cli.context import GlobalOptions
from niclip_ray.cli.main import run
from niclip_ray.cli.runconfig import load_run_config
from niclip_ray.cli.submit import wants_submission
from niclip_ray.errors import ConfigError
from niclip_ray.runtime import jobs
from niclip_ray.runtime.cluster import free_port, load_cluster_config
from tests.conftest import stop_ray_head

REPO = Path(__file__).resolve().parents[2]


def test_job_argv_drops_only_the_submission_options():
    argv = ["--address", "http://h:8265", "--num-cpus", "2", "--cluster=c.yaml", "embed", "images", "--out", "o"]
    assert jobs.job_argv(argv) == ["--num-cpus", "2", "embed", "images", "--out", "o"]
    assert jobs.job_argv(["--working-dir", "/x", "decode", "m.nii.gz"]) == ["decode", "m.nii.gz"]


def test_submission_id_is_stable_and_input_sensitive():
    a = jobs.submission_id(["embed", "images", "--corpus", "c1"])
    assert a == jobs.submission_id(["embed", "images", "--corpus", "c1"])
    assert a != jobs.submission_id(["embed", "images", "--corpus", "c2"])
    assert a.startswith("niclip-embed-images-") and len(a.rsplit("-", 1)[1]) == 12


def test_wants_submission(monkeypatch):
    monkeypatch.delenv(jobs.IN_JOB_ENV, raising=False)
    http = GlobalOptions(address="http://head:8265")
    assert wants_submission(http, "embed", ["embed", "images"])
    assert wants_submission(GlobalOptions(cluster=Path("c.yaml")), "decode", ["decode"])
    assert not wants_submission(GlobalOptions(address="auto"), "embed", ["embed"])
    assert not wants_submission(http, "jobs", ["jobs", "list"])
    assert not wants_submission(http, "info", ["info"])
    assert not wants_submission(http, "embed", ["embed", "images", "--help"])
    monkeypatch.setenv(jobs.IN_JOB_ENV, "1")
    assert not wants_submission(http, "embed", ["embed", "images"])


def test_shipped_cluster_configs_validate(capsys):
    for name in ("cluster.yaml", "cluster-onprem.yaml"):
        load_cluster_config(REPO / "cluster" / name)
        assert run(["cluster", "validate", str(REPO / "cluster" / name)]) == 0
    out = capsys.readouterr().out
    assert "aws provider" in out and "local provider" in out


def test_kuberay_manifests_are_well_formed():
    cluster = yaml.safe_load((REPO / "cluster" / "kuberay" / "raycluster.yaml").read_text())
    job = yaml.safe_load((REPO / "cluster" / "kuberay" / "rayjob.yaml").read_text())
    assert cluster["kind"] == "RayCluster" and job["kind"] == "RayJob"
    assert cluster["spec"]["authOptions"]["mode"] == "token"
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu_limits["nvidia.com/gpu"] == "1"
    assert job["spec"]["entrypoint"].startswith("niclip-ray")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(head_node_type="nope"), "invalid cluster config"),
        (lambda c: c["available_node_types"]["cpu_worker"].pop("node_config"), "invalid cluster config"),
        (lambda c: c.update(provider={"type": "nonsense-cloud"}), "invalid cluster config"),
    ],
)
def test_invalid_cluster_config_is_a_clear_error(tmp_path, change, message):
    config = yaml.safe_load((REPO / "cluster" / "cluster.yaml").read_text())
    change(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=message):
        load_cluster_config(path)


def test_cluster_config_not_yaml_or_missing(tmp_path, capsys):
    (tmp_path / "x.yaml").write_text("a: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_cluster_config(tmp_path / "x.yaml")
    assert run(["cluster", "validate", str(tmp_path / "missing.yaml")]) == 1
    assert "cluster config not found" in capsys.readouterr().err


def test_unreachable_jobs_address_fails_fast(capsys, monkeypatch):
    monkeypatch.delenv(jobs.IN_JOB_ENV, raising=False)
    started = time.monotonic()
    assert run(["--address", "http://127.0.0.1:1", "corpus", "info", "x"]) == 1
    assert time.monotonic() - started < 30
    assert "no Ray cluster answers at http://127.0.0.1:1" in capsys.readouterr().err


AGENT_STARTING = RuntimeError("Request failed with status code 500: No available agent to submit job, please try "
                              "again later.")


class StartingHead:
    """A Jobs API client whose head refuses ``refusals`` submissions before it accepts one."""

    def __init__(self, *refusals):
        self.refusals, self.submitted = list(refusals), []

    def get_job_status(self, sid):
        raise RuntimeError(f"Job {sid} does not exist")

    def submit_job(self, **job):
        if self.refusals:
            raise self.refusals.pop(0)
        self.submitted.append(job["submission_id"])


def test_a_head_still_starting_is_waited_for_with_one_line(monkeypatch):
    import requests

    reset = requests.exceptions.ConnectionError("('Connection aborted.', ConnectionResetError(104, 'reset'))")
    head = StartingHead(AGENT_STARTING, reset, AGENT_STARTING)
    pauses, lines = [], []
    monkeypatch.setattr(jobs, "client", lambda address: head)
    monkeypatch.setattr(jobs.time, "sleep", pauses.append)
    sid, attached = jobs.submit("http://127.0.0.1:8265", ["corpus", "info", "x"], on_wait=lines.append)
    assert head.submitted == [sid] and not attached
    assert pauses == [1.0, 2.0, 4.0]
    assert len(lines) == 1 and lines[0].startswith("waiting for the cluster at http://127.0.0.1:8265 to accept jobs "
                                                   "(up to 60 s): Request failed with status code 500")


def test_a_head_that_keeps_refusing_or_refuses_otherwise_is_a_clear_error(monkeypatch):
    clock = iter(range(0, 10_000, 5))
    monkeypatch.setattr(jobs.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(jobs.time, "sleep", lambda s: None)
    monkeypatch.setattr(jobs, "client", lambda address: StartingHead(*[AGENT_STARTING] * 100))
    with pytest.raises(ConfigError, match=r"still refused job niclip-corpus-info-\w+ after 60 s .*NICLIP_JOB_AGENT_WAIT_S"):
        jobs.submit("http://h:8265", ["corpus", "info", "x"])
    head = StartingHead(RuntimeError("Request failed with status code 400: runtime_env invalid"))
    monkeypatch.setattr(jobs, "client", lambda address: head)
    with pytest.raises(ConfigError, match="refused job niclip-corpus-info-.*: Request failed with status code 400"):
        jobs.submit("http://h:8265", ["corpus", "info", "x"])
    assert head.refusals == [] and head.submitted == []  # refused once, not tried again


def test_run_config_gives_option_defaults(tmp_path, capsys):
    out = tmp_path / "corpus"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"corpus": {"ingest": {"source": "nimare:neurosynth_laird", "out_dir": str(out)}},
                                      "steps": [["corpus", "ingest"]]}))
    assert run(["--config", str(config), "corpus", "ingest"]) == 0
    assert (out / "studies.parquet").is_file()
    config.write_text("steps: 3\n")
    with pytest.raises(ConfigError, match="steps"):
        load_run_config(config)


@pytest.fixture(scope="module")
def ray_head():
    """A real local Ray head with the Jobs API, on free ports, torn down by process group."""
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")
    dashboard = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={free_port()}",
           f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={free_port()}", "--num-cpus=1",
           "--include-dashboard=true", "--disable-usage-stats", f"--temp-dir={temp}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("local Ray head did not start")
            time.sleep(1)
    yield address
    stop_ray_head(proc, temp)


@pytest.mark.timeout(400)
def test_job_round_trip_on_a_local_head(ray_head, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(jobs.IN_JOB_ENV, raising=False)
    monkeypatch.chdir(REPO)
    out = tmp_path / "corpus"
    argv = ["--address", ray_head, "corpus", "ingest", "nimare:neurosynth_laird", "--out", str(out)]
    assert run(argv) == 0
    first = capsys.readouterr()
    assert "submitted job niclip-corpus-ingest-" in first.out and "17 studies" in first.out
    assert (out / "studies.parquet").is_file()

    assert run(argv) == 0  # identical command: attaches, no second job
    assert "attached to the identical job" in capsys.readouterr().out
    client = jobs.client(ray_head)
    assert len([j for j in client.list_jobs() if j.submission_id.startswith("niclip-corpus-ingest")]) == 1

    bad = ["--address", ray_head, "corpus", "ingest", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]
    assert run(bad) == 1
    failed = capsys.readouterr()
    assert "corpus source not found" in failed.err and "ended FAILED" in failed.err
    sid = jobs.submission_id(jobs.job_argv(bad))

    assert run(["--address", ray_head, "jobs", "status", sid]) == 0
    assert "FAILED" in capsys.readouterr().out
    assert run(["--address", ray_head, "jobs", "logs", sid]) == 0
    assert "corpus source not found" in capsys.readouterr().out
    assert run(["--address", ray_head, "jobs", "list"]) == 0
    assert sid in capsys.readouterr().out

    assert run(bad) == 1  # a failed job is retried under a new id, not attached to
    assert f"{sid}-r2" in capsys.readouterr().out


def _command(path):
    import typer

    from niclip_ray.cli.main import app

    command = typer.main.get_command(app)
    for word in path:
        command = command.commands[word]
    return command


def _sections(config, path=()):
    for key, value in config.items():
        if key == "steps":
            continue
        try:
            command = _command([*path, key])
        except KeyError:
            raise AssertionError(f"{' '.join([*path, key])} is not a niclip-ray command") from None
        if hasattr(command, "commands"):
            yield from _sections(value, (*path, key))
        else:
            yield (*path, key), command, value


def test_paper_run_config_names_real_commands_and_options(capsys):
    config = load_run_config(REPO / "jobs" / "paper.yaml")
    for path, command, options in _sections(config):
        names = {p.name for p in command.params}
        assert set(options) <= names, f"{' '.join(path)}: unknown options {set(options) - names}"
    for step in config["steps"]:
        _command(step)
    assert run(["pipeline", str(REPO / "jobs" / "paper.yaml"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "[7/7]" in printed and "--config" in printed


def test_pipeline_runs_steps_in_order_and_stops_on_failure(tmp_path, capsys):
    out = tmp_path / "corpus"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "corpus": {"ingest": {"source": "nimare:neurosynth_laird", "out_dir": str(out)},
                   "info": {"corpus_dir": str(out)}},
        "steps": [["corpus", "ingest"], ["corpus", "info"]],
    }))
    assert run(["pipeline", str(config)]) == 0
    assert (out / "studies.parquet").is_file()
    assert "[2/2]" in capsys.readouterr().out
    config.write_text(yaml.safe_dump({"corpus": {"info": {"corpus_dir": str(tmp_path / "nope")}},
                                      "steps": [["corpus", "info"], ["corpus", "info"]]}))
    assert run(["pipeline", str(config)]) == 1
    captured = capsys.readouterr()
    assert "step 1 (corpus info) exited 1; rerun with --start 1" in captured.err
    assert "[2/2]" not in captured.out


@pytest.mark.timeout(400)
def test_embed_images_job_on_a_local_head(ray_head, tmp_path, capsys, monkeypatch):
    """The image stage runs inside a job on the cluster and writes the same contract."""
    monkeypatch.delenv(jobs.IN_JOB_ENV, raising=False)
    monkeypatch.chdir(REPO)
    corpus, features = tmp_path / "corpus", tmp_path / "images"
    assert run(["corpus", "ingest", "nimare:neurosynth_laird", "--out", str(corpus)]) == 0
    argv = ["--address", ray_head, "embed", "images", "--corpus", str(corpus), "--out", str(features),
            "--dim", "64", "--shard-size", "8", "--standin"]
    assert run(argv) == 0
    printed = capsys.readouterr().out
    assert "submitted job niclip-embed-images-" in printed and "17 ok, 0 failed rows in 3 shards" in printed
    table = pq.read_table(sorted(features.glob("part-*.parquet")))
    assert sorted(table["study_id"].to_pylist()) == sorted(pq.read_table(corpus / "studies.parquet")["study_id"].to_pylist())
    assert table.schema.field("embedding").type.shape == [64]
    sid = jobs.submission_id(jobs.job_argv(argv))
    assert run(["--address", ray_head, "jobs", "status", sid]) == 0
    assert "SUCCEEDED" in capsys.readouterr().out


@pytest.mark.timeout(200)
def test_jobs_stop_ends_a_running_job(ray_head, capsys):
    client = jobs.client(ray_head)
    sid = client.submit_job(entrypoint=f"{sys.executable} -c 'import time; time.sleep(600)'",
                            submission_id=f"niclip-test-sleep-{os.getpid()}")
    deadline = time.monotonic() + 90
    while client.get_job_status(sid).value != "RUNNING":
        assert time.monotonic() < deadline, f"job {sid} never started"
        time.sleep(1)
    assert run(["--address", ray_head, "jobs", "stop", sid]) == 0
    assert "stop requested" in capsys.readouterr().out
    while client.get_job_status(sid).value == "RUNNING":
        assert time.monotonic() < deadline + 60, f"job {sid} still running after stop"
        time.sleep(1)
    assert client.get_job_status(sid).value == "STOPPED"
    assert run(["--address", ray_head, "jobs", "stop", sid]) == 0
    assert "was not running" in capsys.readouterr().out
