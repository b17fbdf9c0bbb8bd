"""What OSF publishes about a file: its name, size, sha256 and download address (API v2).

``GET {api}/files/<id>/`` answers ``data.attributes.{name, size, extra.hashes.sha256}`` and
``data.links.download``; ``GET {api}/nodes/<node>/files/osfstorage/`` lists a node's top
folder, and each folder entry links its own listing
(``relationships.files.links.related.href``); listings are paged (``links.next``).
The checksums are the ones OSF computes and publishes for every stored file, so a file
verified against them is the file the authors uploaded.

The base addresses come from ``NICLIP_OSF_API`` (default ``https://api.osf.io/v2``) and
``NICLIP_OSF_FILES`` (default ``https://osf.io``, downloads at ``/download/<id>/``); tests
point them at a local server.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

import requests

from niclip_ray.errors import ConfigError, InputError

API_ENV, FILES_ENV = "NICLIP_OSF_API", "NICLIP_OSF_FILES"
DEFAULT_API, DEFAULT_FILES = "https://api.osf.io/v2", "https://osf.io"
#: Seconds to wait for a connection: an offline machine fails within them.
CONNECT_TIMEOUT_S = 5.0
#: Seconds a started response may stay silent before the request is abandoned.
READ_TIMEOUT_S = 60.0
_SHA256 = re.compile(r"[0-9a-f]{64}")


class OsfUnreachable(ConfigError):
    """OSF (or the server named by ``NICLIP_OSF_API`` / ``NICLIP_OSF_FILES``) cannot be reached."""


@dataclass(frozen=True)
class RemoteFile:
    """One OSF file as its metadata describes it.

    Parameters
    ----------
    path : str
        Where it goes, relative to the download directory (``/``-separated).
    osf_id : str
        OSF's id of the file (a guid such as ``u3cxh``, or a storage id).
    name : str
        OSF's name of the file.
    size : int
        Size in bytes, as OSF reports it.
    sha256 : str
        SHA-256 in hex, as OSF reports it.
    url : str
        Where to download it.
    """

    path: str
    osf_id: str
    name: str
    size: int
    sha256: str
    url: str

    def as_json(self) -> dict:
        """The fields as a JSON object (an entry of ``SOURCES.json``)."""
        return asdict(self)


def api_base() -> str:
    """OSF's API v2 address (``NICLIP_OSF_API`` overrides it), without a trailing slash."""
    return (os.environ.get(API_ENV) or DEFAULT_API).rstrip("/")


def files_base() -> str:
    """OSF's web address for downloads (``NICLIP_OSF_FILES`` overrides it), without a trailing slash."""
    return (os.environ.get(FILES_ENV) or DEFAULT_FILES).rstrip("/")


def download_url(osf_id: str) -> str:
    """``{files}/download/<id>/``: where a file is downloaded by hand."""
    return f"{files_base()}/download/{osf_id}/"


def get(url: str, what: str, headers: dict | None = None, stream: bool = False) -> requests.Response:
    """GET ``url`` with a short connect timeout; redirects are followed.

    Raises
    ------
    OsfUnreachable
        No connection within :data:`CONNECT_TIMEOUT_S` (offline, DNS failure, refused).
    InputError
        The server answers 404 (``what`` is named) or another error status.
    """
    try:
        response = requests.get(url, headers=headers, stream=stream, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise OsfUnreachable(f"cannot reach {url} for {what}: {type(exc).__name__}") from exc
    if response.status_code == 404:
        response.close()
        raise InputError(f"OSF has no {what} (404 from {url})")
    if response.status_code >= 400:
        response.close()
        raise InputError(f"OSF answered {response.status_code} {response.reason} for {what} ({url})")
    return response


def _json(url: str, what: str) -> dict:
    response = get(url, what)
    try:
        return response.json()
    except ValueError as exc:
        raise InputError(f"OSF's answer for {what} ({url}) is not JSON") from exc


def _entry(item: dict, path: str, what: str) -> RemoteFile:
    """A :class:`RemoteFile` from an API ``files`` object; malformed metadata is refused."""
    attributes = item.get("attributes") or {}
    size = attributes.get("size")
    sha256 = str(((attributes.get("extra") or {}).get("hashes") or {}).get("sha256") or "").lower()
    if not isinstance(size, int) or size < 0 or not _SHA256.fullmatch(sha256):
        raise InputError(f"OSF's metadata for {what} has no usable size and sha256 (size {size!r}, sha256 {sha256!r})")
    osf_id = str(attributes.get("guid") or item.get("id") or "")
    url = (item.get("links") or {}).get("download") or download_url(osf_id)
    return RemoteFile(path, osf_id, str(attributes.get("name") or path), size, sha256, url)


def file_info(osf_id: str, path: str) -> RemoteFile:
    """Metadata of the file ``osf_id`` (``GET {api}/files/<id>/``), to be saved as ``path``."""
    what = f"file {osf_id} ({path})"
    data = _json(f"{api_base()}/files/{osf_id}/", what).get("data")
    if not isinstance(data, dict):
        raise InputError(f"OSF's answer for {what} has no data object")
    entry = _entry(data, path, what)
    return RemoteFile(entry.path, osf_id, entry.name, entry.size, entry.sha256, entry.url)


def _listing(url: str, what: str) -> list[dict]:
    """Every entry of a paged folder listing."""
    items = []
    while url:
        page = _json(url, what)
        items += [item for item in page.get("data") or [] if isinstance(item, dict)]
        url = (page.get("links") or {}).get("next")
    return items


def _safe_name(name: str, what: str) -> str:
    if not name or name in {".", ".."} or "/" in name or "\\" in name:
        raise InputError(f"OSF lists an entry named {name!r} in {what}; refusing it as a file name")
    return name


def folder_files(node: str, folder: str, dest: str) -> list[RemoteFile]:
    """Every file under ``folder`` (``/``-separated, from the node's top) of ``node``'s OSF storage.

    Files keep their place below ``folder``, placed under ``dest``; sub-folders are followed.

    Raises
    ------
    InputError
        When the folder does not exist (naming it) or a listing is malformed.
    """
    url, where = f"{api_base()}/nodes/{node}/files/osfstorage/", f"node {node}"
    for part in [p for p in folder.split("/") if p]:
        entries = _listing(url, f"folder {where}")
        match = [e for e in entries if (e.get("attributes") or {}).get("kind") == "folder"
                 and (e.get("attributes") or {}).get("name") == part]
        where = f"{where}/{part}"
        if not match:
            raise InputError(f"OSF has no folder {where} (404 in the listing of {url})")
        url = _href(match[0], where)
    return _walk(url, dest, where)


def _href(folder: dict, where: str) -> str:
    """The address of a folder entry's own listing."""
    try:
        return str(folder["relationships"]["files"]["links"]["related"]["href"])
    except (KeyError, TypeError) as exc:
        raise InputError(f"OSF's entry for folder {where} does not link its listing") from exc


def _walk(url: str, dest: str, where: str) -> list[RemoteFile]:
    files = []
    for item in _listing(url, f"folder {where}"):
        attributes = item.get("attributes") or {}
        name = _safe_name(str(attributes.get("name") or ""), f"folder {where}")
        if attributes.get("kind") == "folder":
            files += _walk(_href(item, f"{where}/{name}"), f"{dest}/{name}", f"{where}/{name}")
        else:
            files.append(_entry(item, f"{dest}/{name}", f"{where}/{name}"))
    if not files:
        raise InputError(f"OSF's folder {where} lists no files")
    return files
