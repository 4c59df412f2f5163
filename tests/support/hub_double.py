"""A strict test double of the Hugging Face Hub HTTP API, served on 127.0.0.1 from a thread.

This is test tooling, not the Hub. It implements the endpoints `huggingface_hub` (unchanged) calls
to create a repo, upload through the LFS basic transfer, commit, list and download:
- GET /api/whoami-v2; POST /api/validate-yaml (the README.md front matter must be a YAML mapping); POST /api/repos/create (a first commit with .gitattributes; 409 when it exists, which `exist_ok` accepts);
- GET /api/models/{repo}[/revision/{rev}] (model info with siblings and sha);
- POST /api/models/{repo}/branch/{name} (from main; 409 when it exists);
- POST /api/models/{repo}/preupload/{rev}: `lfs` for binaries and files over 10 MB, `regular` otherwise;
- POST /{repo}.git/info/lfs/objects/batch, PUT of the object (sha256 checked over the body: 400 on a
  mismatch, nothing stored), POST verify (404 for an object never stored);
- POST /api/models/{repo}/commit/{rev} (NDJSON: header, file, lfsFile; 412 when parentCommit is not
  the branch head, 400 for an lfsFile whose object was never uploaded);
- GET /api/models/{repo}/tree/{rev}, POST /api/models/{repo}/paths-info/{rev} (with LFS oids);
- HEAD/GET /{repo}/resolve/{rev}/{path} with ETag, X-Repo-Commit, X-Linked-Etag and X-Linked-Size.
A bad token is 401, a missing repo 404 (with the X-Error-Code the client reads). Every request is
logged in `requests` as (method, path) so tests can assert the protocol.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

TOKEN = "hf_double_token_0123456789"
GITATTRIBUTES = b"*.gguf filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
USER = "tester"


@dataclass
class Blob:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_oid(self) -> str:  # git's blob id, as the Hub reports it for regular files
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass
class Repo:
    private: bool = False
    heads: dict[str, str] = field(default_factory=dict)  # branch -> commit
    commits: dict[str, dict[str, Blob]] = field(default_factory=dict)  # commit -> tree


@dataclass
class HubDouble:
    repos: dict[str, Repo] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_after_puts: int | None = None  # refuse LFS uploads after this many: an interrupted push
    put_count: int = 0  # counted under the lock, so parallel uploads cannot race past the limit
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> HubDouble:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def puts(self) -> list[str]:
        return [p for m, p in self.requests if m == "PUT"]

    def tree(self, repo: str, rev: str = "main") -> dict[str, Blob]:
        r = self.repos[repo]
        return r.commits[r.heads[rev]]

    def seed(self, repo: str, files: dict[str, bytes]) -> None:
        """A repo that already exists with these files (one commit on main)."""
        r = self.repos.setdefault(repo, Repo())
        commit = hashlib.sha1(repr(sorted(files)).encode()).hexdigest()
        r.commits[commit] = {p: Blob(d, p.endswith(".gguf")) for p, d in files.items()}
        r.heads["main"] = commit


class _Refused(Exception):
    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _handler(hub: HubDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.hub = hub
    return Handler


class _Handler(BaseHTTPRequestHandler):
    hub: HubDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, payload: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _auth(self, required: bool = True) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            if required:
                raise _Refused(401, "Invalid credentials in Authorization header")
            return None
        if auth != f"Bearer {TOKEN}":
            raise _Refused(401, "Invalid credentials in Authorization header")
        return USER

    def _repo(self, repo_id: str) -> Repo:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and self._auth(required=False) is None):
            raise _Refused(404, "Repository not found", "RepoNotFound")
        return repo

    def _dispatch(self) -> None:
        path = unquote(urlparse(self.path).path)
        with self.hub.lock:
            self.hub.requests.append((self.command, path))
        body = self._body() if self.command in ("POST", "PUT") else b""
        try:
            with self.hub.lock:
                status, payload, raw, headers = _route(self, path, body)
        except _Refused as exc:
            self._send(exc.status, {"error": exc.message}, headers={"X-Error-Code": exc.code} if exc.code else {"X-Error-Message": exc.message})
            return
        self._send(status, payload, raw=raw, headers=headers)

    do_GET = do_POST = do_PUT = do_HEAD = _dispatch


def _route(h: _Handler, path: str, body: bytes) -> tuple[int, Any, bytes | None, dict[str, str]]:
    parts = path.strip("/").split("/")
    if path == "/api/whoami-v2":
        return 200, {"type": "user", "name": h._auth(), "auth": {"accessToken": {"role": "write"}}}, None, {}
    if path == "/api/validate-yaml":
        return _validate_yaml(json.loads(body)["content"])
    if path == "/api/repos/create":
        return _create(h, json.loads(body))
    if parts[0] == "api" and parts[1] == "models" and len(parts) >= 4:
        repo_id = f"{parts[2]}/{parts[3]}"
        verb, rest = (parts[4], parts[5:]) if len(parts) > 4 else ("info", [])
        return _api(h, repo_id, verb, rest, body)
    if len(parts) >= 4 and parts[1].endswith(".git") and parts[2:4] == ["info", "lfs"]:
        return _lfs(h, f"{parts[0]}/{parts[1][:-4]}", parts[4:], body)
    if len(parts) >= 5 and parts[2] == "resolve":
        return _resolve(h, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
    raise _Refused(404, f"no route {h.command} {path}")


def _validate_yaml(content: str) -> tuple[int, Any, None, dict[str, str]]:
    """The metadata check the Hub runs on a README.md commit: front matter must be a YAML mapping."""
    import yaml

    if not content.startswith("---\n"):
        return 200, {"warnings": [{"message": "empty or missing yaml metadata in repo card"}]}, None, {}
    try:
        meta = yaml.safe_load(content.split("---\n", 2)[1])
    except (IndexError, yaml.YAMLError) as exc:
        raise _Refused(400, f"Invalid YAML metadata: {exc}") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("tags", []), list):
        raise _Refused(400, "YAML metadata must be a mapping; tags must be a list")
    return 200, {"errors": [], "warnings": []}, None, {}


def _create(h: _Handler, req: dict[str, Any]) -> tuple[int, Any, None, dict[str, str]]:
    user = h._auth()
    repo_id = f"{req.get('organization') or user}/{req['name']}"
    if req.get("organization") not in (None, user):
        raise _Refused(403, "You don't have the rights to create a model under this namespace")
    if repo_id in h.hub.repos:  # the client's exist_ok reads the url from this refusal
        return 409, {"error": "You already created this model repo", "url": f"{h.hub.url}/{repo_id}"}, None, {}
    repo = h.hub.repos[repo_id] = Repo(private=bool(req.get("private")))
    first = hashlib.sha1(f"init {repo_id}".encode()).hexdigest()  # like the Hub: a new repo starts with one commit
    repo.commits[first] = {".gitattributes": Blob(GITATTRIBUTES, False)}
    repo.heads["main"] = first
    return 200, {"url": f"{h.hub.url}/{repo_id}", "name": repo_id}, None, {}


def _rev(repo: Repo, rev: str) -> tuple[str | None, dict[str, Blob]]:
    commit = repo.heads.get(rev, rev if rev in repo.commits else None)
    if commit is None and repo.heads:
        raise _Refused(404, f"Invalid rev id: {rev}", "RevisionNotFound")
    return commit, repo.commits.get(commit or "", {})


def _file_entry(path: str, blob: Blob) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "path": path, "size": len(blob.data), "oid": blob.git_oid}
    if blob.lfs:
        entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": 134}
    return entry


def _api(h: _Handler, repo_id: str, verb: str, rest: list[str], body: bytes) -> tuple[int, Any, None, dict[str, str]]:
    repo = h._repo(repo_id)
    rev = unquote(rest[0]) if rest else "main"
    if verb in ("info", "revision"):
        commit, tree = _rev(repo, rev)
        return 200, {"id": repo_id, "sha": commit, "private": repo.private,
                     "siblings": [{"rfilename": p} for p in sorted(tree)]}, None, {}
    if verb in ("tree", "paths-info"):
        _, tree = _rev(repo, rev)
        wanted = set(json.loads(body).get("paths", [])) if verb == "paths-info" else set(tree)
        return 200, [_file_entry(p, b) for p, b in sorted(tree.items()) if p in wanted], None, {}
    h._auth()  # writes below need a token
    if verb == "preupload":
        files = json.loads(body)["files"]
        _, tree = _rev(repo, rev)
        modes = [{"path": f["path"], "uploadMode": _mode(f), "shouldIgnore": False,
                  "oid": tree[f["path"]].git_oid if f["path"] in tree else None} for f in files]
        return 200, {"files": modes, "commitOid": repo.heads.get(rev)}, None, {}
    if verb == "commit":
        return _commit(h, repo_id, repo, rev, body)
    if verb == "branch" and h.command == "POST":
        if rev in repo.heads:  # the client's exist_ok accepts a 409
            raise _Refused(409, f"Reference {rev} already exists")
        start, _ = _rev(repo, (json.loads(body or b"{}") or {}).get("startingPoint") or "main")
        if start is None:  # an empty repo has no commit to branch from
            raise _Refused(400, "Cannot create a branch in an empty repository")
        repo.heads[rev] = start
        return 200, {}, None, {}
    raise _Refused(404, f"no route {verb}")


def _mode(f: dict[str, Any]) -> str:
    sample = base64.b64decode(f["sample"])
    return "lfs" if f["size"] > 10_000_000 or b"\0" in sample or f["path"].endswith(".gguf") else "regular"


def _commit(h: _Handler, repo_id: str, repo: Repo, rev: str, body: bytes) -> tuple[int, Any, None, dict[str, str]]:
    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    header = lines[0]["value"]
    head = repo.heads.get(rev)
    if header.get("parentCommit") and header["parentCommit"] != head:
        raise _Refused(412, "A commit has happened since. Please refresh and try again.")
    tree = dict(repo.commits.get(head or "", {}))
    for line in lines[1:]:
        value = line["value"]
        if line["key"] == "file":
            tree[value["path"]] = Blob(base64.b64decode(value["content"]), False)
        elif line["key"] == "lfsFile":
            if value["oid"] not in h.hub.lfs:
                raise _Refused(400, f"LFS object {value['oid']} for {value['path']} was never uploaded")
            tree[value["path"]] = Blob(h.hub.lfs[value["oid"]], True)
        elif line["key"] == "deletedFile":
            tree.pop(value["path"], None)
    commit = hashlib.sha1(f"{head}{body!r}".encode()).hexdigest()
    repo.commits[commit] = tree
    repo.heads[rev] = commit
    return 200, {"commitUrl": f"{h.hub.url}/{repo_id}/commit/{commit}", "commitOid": commit, "success": True}, None, {}


def _signature(oid: str) -> str:  # the real Hub hands out a presigned storage URL: no token, a signature
    return hashlib.sha256(f"double-secret:{oid}".encode()).hexdigest()[:32]


def _lfs(h: _Handler, repo_id: str, rest: list[str], body: bytes) -> tuple[int, Any, None, dict[str, str]]:
    if h.command == "PUT" and len(rest) == 3:
        return _lfs_put(h, rest, body)
    h._auth()
    h._repo(repo_id)
    base = f"{h.hub.url}/{repo_id}.git/info/lfs/objects"
    if rest == ["objects", "batch"]:
        objects = []
        for obj in json.loads(body)["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in h.hub.lfs:
                entry["actions"] = {"upload": {"href": f"{base}/{obj['oid']}/{obj['size']}?sig={_signature(obj['oid'])}"},
                                    "verify": {"href": f"{base}/verify"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}, None, {}
    if rest == ["objects", "verify"]:
        oid = json.loads(body)["oid"]
        if oid not in h.hub.lfs:
            raise _Refused(404, f"LFS object {oid} not found")
        return 200, {"success": True}, None, {}
    raise _Refused(404, "no such LFS route")


def _lfs_put(h: _Handler, rest: list[str], body: bytes) -> tuple[int, Any, None, dict[str, str]]:
    if f"sig={_signature(rest[1])}" not in (urlparse(h.path).query or ""):
        raise _Refused(403, "Request signature does not match")
    h.hub.put_count += 1
    if h.hub.fail_after_puts is not None and h.hub.put_count > h.hub.fail_after_puts:
        raise _Refused(400, "connection dropped by the test")  # 400: the client does not retry it
    if hashlib.sha256(body).hexdigest() != rest[1] or len(body) != int(rest[2]):
        raise _Refused(400, "sha256 of the uploaded object does not match its oid")
    h.hub.lfs[rest[1]] = body
    return 200, {}, None, {}


def _resolve(h: _Handler, repo_id: str, rev: str, path: str) -> tuple[int, Any, bytes, dict[str, str]]:
    repo = h._repo(repo_id)
    commit, tree = _rev(repo, unquote(rev))
    blob = tree.get(path)
    if blob is None:
        raise _Refused(404, f"Entry not found: {path}", "EntryNotFound")
    headers = {"ETag": f'"{blob.git_oid}"', "X-Repo-Commit": commit or ""}
    if blob.lfs:
        headers |= {"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))}
    return 200, None, blob.data, headers
