"""Shared fixtures: one embedded Ray for the whole session, sized for a 2-CPU machine."""

import os

# Ray Data's waits (read when niclip_ray.runtime is imported): long enough for a loaded
# machine, shorter than the product's so that a real hang ends within a test's timeout.
os.environ.setdefault("NICLIP_WAIT_FOR_ACTORS_S", "480")
os.environ.setdefault("NICLIP_NO_PROGRESS_TIMEOUT_S", "540")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import shutil
import signal
import subprocess

import pytest


def write_abstract_corpus(path, abstracts: dict, coordinates) -> None:
    """A minimal corpus directory: studies with these abstracts (other text empty) and these peaks."""
    import pandas as pd

    studies = pd.DataFrame({"study_id": list(abstracts), "abstract": list(abstracts.values())})
    for column in ("pmid", "title", "body", "source", "label"):
        studies[column] = ""
    studies["n_analyses"] = studies["n_peaks"] = 1
    studies.to_parquet(path / "studies.parquet", index=False)
    coordinates.to_parquet(path / "coordinates.parquet", index=False)


def stop_ray_head(proc: subprocess.Popen, temp_dir: str) -> None:
    """Tear down a ``ray start --head --block`` started in its own session, and its files."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)  # a clean stop takes over 30 s on 2 CPUs; what is left is killed below
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)
    shutil.rmtree(temp_dir, ignore_errors=True)


#: The addresses a socket of ours may listen on.
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}


def tree_listening(process) -> set[tuple[str, int, str]]:
    """The sockets a process and its descendants listen on now."""
    import psutil

    found = set()
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return found
    for member in family:
        try:
            found |= {(c.laddr.ip, c.laddr.port, member.name()) for c in member.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


#: Most a test's timeout is stretched on a loaded machine.
MAX_STRETCH = 4.0
#: What a failure that timed out says, to tell a slow machine from a wrong result.
TIMEOUT_SIGNS = ("Timed out while starting actors", "made no progress for", "Timeout (>", "GetTimeoutError",
                 "timed out during startup")


def machine_load() -> float:
    """The 1-minute load average per CPU of this machine (0 where the system does not say)."""
    return os.getloadavg()[0] / (os.cpu_count() or 1) if hasattr(os, "getloadavg") else 0.0


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Stretch a test's timeout by the machine's load (up to MAX_STRETCH times) before it starts.

    A machine running at a load of 6 per CPU runs each test several times slower; its
    waits scale with it so that slowness alone does not fail a test.
    """
    stretch = min(max(machine_load(), 1.0), MAX_STRETCH)
    if stretch > 1.0:
        marker = item.get_closest_marker("timeout")
        base = marker.args[0] if marker and marker.args else item.config.getini("timeout")
        if base:
            item.add_marker(pytest.mark.timeout(float(base) * stretch), append=False)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Say so when a test failed by running out of time: a timeout of the machine, not a wrong result."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and any(sign in str(report.longrepr) for sign in TIMEOUT_SIGNS):
        cpus = os.cpu_count()
        report.sections.append(("timeout of the machine", (
            f"This test ran out of time (load average {machine_load() * cpus:.1f} on {cpus} CPUs now): "
            "a timeout of the machine, not a wrong result. Rerun it on a quieter machine.")))


def pytest_collection_modifyitems(items):
    """Ship test modules to Ray workers by value: workers cannot import them by name."""
    from ray import cloudpickle

    for module in {item.module for item in items if getattr(item, "module", None) is not None}:
        cloudpickle.register_pickle_by_value(module)


@pytest.fixture(scope="session")
def ray_local():
    """An embedded Ray with 2 CPUs and a small object store, shared by all Ray tests."""
    import ray

    from niclip_ray.runtime.session import configure_data_context

    if not ray.is_initialized():
        # Workers' console lines stay in Ray's logs, as in the product's embedded Ray: printed
        # here they would land, late, in whichever test captures the console at the time.
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20,
                 log_to_driver=False)
    configure_data_context(quiet=True)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_bert_factory(tmp_path_factory):
    """Build, once per size, a seeded 2-layer 32-d BERT with MiniLM's real tokenizer, saved to disk.

    Call it with the number of positions the model should accept; it returns the model folder.
    """
    built = {}

    def build(max_positions: int):
        if max_positions not in built:
            import torch
            from transformers import AutoTokenizer, BertConfig, BertModel

            from niclip_ray.features.local_models import packaged_model_path

            path = tmp_path_factory.mktemp(f"bert{max_positions}")
            tokenizer = AutoTokenizer.from_pretrained(packaged_model_path("all-minilm-l6-v2"))
            tokenizer.save_pretrained(path)
            torch.manual_seed(0)
            config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=max_positions)
            BertModel(config).eval().save_pretrained(path)
            built[max_positions] = path
        return built[max_positions]

    return build


#: Folder of the full-scale real data (``nimare/neurosynth``, ``nimare/neuroquery``,
#: ``cognitive_atlas``); ``.ci/run`` sets it when ``../shared/data`` exists.
REAL_DATA_ENV = "NICLIP_REAL_DATA"
REAL_DATA_FILES = (
    "nimare/neurosynth/data-neurosynth_version-7_coordinates.tsv.gz",
    "nimare/neurosynth/data-neurosynth_version-7_metadata.tsv.gz",
    "nimare/neuroquery/data-neuroquery_version-1_coordinates.tsv.gz",
    "nimare/neuroquery/data-neuroquery_version-1_metadata.tsv.gz",
    "nimare/neuroquery/data-neuroquery_version-1_vocab-neuroquery7547_vocabulary.txt",
    "nimare/neuroquery/data-neuroquery_version-1_vocab-neuroquery7547_source-abstract_type-count_features.npz",
    "cognitive_atlas/TaskCollection.json",
    "cognitive_atlas/ConceptCollection.json",
    "cognitive_atlas/ConceptClassCollection.json",
    "cognitive_atlas/AssertionCollection.json",
    "cognitive_atlas/ContrastCollection.json",
)


@pytest.fixture(scope="session")
def real_data():
    """The real-data folder named by ``$NICLIP_REAL_DATA`` (read-only: copy before writing).

    Skips when the variable is unset or names no folder (a user's clone); fails when the
    folder exists but a file the tests read is missing.
    """
    from pathlib import Path

    value = os.environ.get(REAL_DATA_ENV, "")
    if not value or not Path(value).is_dir():
        pytest.skip(f"${REAL_DATA_ENV} names no folder of real data (Neurosynth, NeuroQuery, Cognitive Atlas)")
    root = Path(value)
    missing = [name for name in REAL_DATA_FILES if not (root / name).is_file()]
    if missing:
        pytest.fail(f"${REAL_DATA_ENV}={root} lacks {', '.join(missing)}")
    return root
