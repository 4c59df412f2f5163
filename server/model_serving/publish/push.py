"""Plan, upload and verify a publish with huggingface_hub's own API; a re-run resumes (the Hub skips LFS
objects it already holds). The token comes from HF_TOKEN or the Hub login and is never put in a result."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from model_serving.errors import InputError, ServingError, VerificationFailed
from model_serving.failures import guarded
from model_serving.jobs import Progress
from model_serving.requests import PublishRequest
from model_serving.settings import Settings
from model_serving.util.paths import sha256_file

from .card import render_card
from .collect import Collected, Upload, collect, hashed
from .outcome import PublishedFile, PublishResult

# Imported inside functions: huggingface_hub, about a second to import, only when the Hub is called.


def _api() -> Any:
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise InputError("No Hugging Face token: HF_TOKEN is unset and there is no Hub login.",
                         "Set HF_TOKEN to a write token, or run `hf auth login`, then publish again.")
    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)


def _user(api: Any) -> str:
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return str(api.whoami()["name"])
    except HfHubHTTPError as exc:
        raise InputError("The Hub refused the token (401).", "Check HF_TOKEN (a write token) or log in again with `hf auth login`.") from exc


def _remote(api: Any, repo: str, revision: str) -> tuple[dict[str, str], str | None]:
    """Path -> oid (LFS sha256, or git blob id) at the branch head, and the head commit; empty when there is none yet."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        head = api.model_info(repo, revision=revision).sha
        files = {f.path: (f.lfs.sha256 if f.lfs else f.blob_id) for f in api.list_repo_tree(repo, revision=revision, recursive=True)
                 if hasattr(f, "blob_id")}
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return {}, None
    return files, head


def _action(up: Upload, remote: dict[str, str]) -> str:
    if up.path_in_repo not in remote:
        return "add"
    return "same" if remote[up.path_in_repo] in (up.sha256, up.git_oid) else "change"


def _refuse_broken(collected: Collected, allow: bool) -> bool:
    broken = [up.local.name for up, _, verdict in collected.ggufs if verdict == "broken" and up.local]
    if broken and not allow:
        raise InputError(f"The quality verdict of {', '.join(broken)} is 'broken': it would publish a model that does not work.",
                         "Publish a better quantization, or pass allow_broken (--allow-broken; the card then says so).")
    return bool(broken)


def _license(collected: Collected, given: str | None) -> str:
    found = given or next((info.license for _, info, _ in collected.ggufs if info.license), None)
    if not found:
        raise InputError("The source's license could not be determined (no general.license in the GGUF).",
                         "Pass license (--license) with the source's license id, e.g. apache-2.0.")
    return found.lower()


def _hub(req: PublishRequest) -> tuple[Any, str, dict[str, str], str | None]:
    """The client, the token's user, and the repo's files and head at the revision."""
    api = _api()
    user = _user(api)
    remote, head = _remote(api, req.repo, req.revision)
    return api, user, remote, head


def publish(settings: Settings, req: PublishRequest, progress: Progress | None = None) -> PublishResult:
    """Plan the files and card; unless plan, upload what differs and verify the new commit.

    A plan works offline: what it could not check (the token, the repo's files) is said in its warnings, and
    every file's action is `unknown`."""
    progress = progress or Progress()
    collected = collect(settings, req.source, req.repo, req.include)
    broken = _refuse_broken(collected, req.allow_broken)
    license_id = _license(collected, req.license)
    unchecked = None
    try:
        api, user, remote, head = guarded(lambda: _hub(req))
    except ServingError as exc:
        if not req.plan:
            raise
        api, user, remote, head, unchecked = None, req.repo.split("/")[0], {}, None, exc
    card = render_card(collected, req.repo, license_id=license_id, user=user, broken=broken)
    uploads = [up for up, _, _ in collected.ggufs] + collected.checkpoint + collected.side + [hashed(Upload("README.md", data=card.encode()))]
    files = [PublishedFile(path_in_repo=u.path_in_repo, local_path=str(u.local or ""), size_bytes=u.size, sha256=u.sha256,
                           action="unknown" if unchecked else _action(u, remote)) for u in uploads]
    others = sorted(set(remote) - {u.path_in_repo for u in uploads} - {".gitattributes"})
    warnings = [f"the repo also holds {', '.join(others)} (kept)"] if others else []
    if unchecked is not None:
        warnings.append(f"not checked against the Hub (the token, the repo's files): {unchecked.cause} {unchecked.next_step}")
    result = PublishResult(repo=req.repo, revision=req.revision, planned_only=req.plan, remote_checked=unchecked is None, files=files,
                           card=card, warnings=warnings)
    changed = [f.path_in_repo for f in files if f.action == "change"]
    if req.plan:
        return result
    if changed and not req.replace:
        raise InputError(f"{req.repo} already holds different {', '.join(changed)}.", "Review them with plan (--plan), then pass replace (--replace) to replace them.")
    _push(api, req, head, [u for u, f in zip(uploads, files, strict=True) if f.action != "same"], result, progress)
    _verify(api, req, uploads, result, collected.lineage.relation if collected.lineage.base_model else None)
    return result


def _push(api: Any, req: PublishRequest, head: str | None, todo: list[Upload], result: PublishResult, progress: Progress) -> None:
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    progress.update(0.1, f"creating {req.repo}")
    try:
        api.create_repo(req.repo, private=req.private, exist_ok=True)
        if req.revision != "main":
            api.create_branch(req.repo, branch=req.revision, exist_ok=True)
            head = head or api.model_info(req.repo, revision=req.revision).sha
        if not todo:
            result.commit_oid = head
            result.commit_url = f"{api.endpoint}/{req.repo}/commit/{head}"
            return
        progress.update(0.2, f"uploading {len(todo)} file(s)")
        ops = [CommitOperationAdd(u.path_in_repo, str(u.local) if u.local else u.data) for u in todo]
        info = api.create_commit(req.repo, ops, commit_message=f"Publish {result.repo} with model-serving", revision=req.revision,
                                 parent_commit=head)
    except (HfHubHTTPError, RuntimeError, OSError) as exc:  # the client wraps a failed LFS upload in a RuntimeError
        cause = exc if isinstance(exc, HfHubHTTPError) else exc.__cause__
        status = cause.response.status_code if isinstance(cause, HfHubHTTPError) and cause.response is not None else "no answer"
        raise ServingError(f"The Hub refused the upload to {req.repo} (HTTP {status}); nothing was committed.",
                           "Run the same publish again: it sends only the files the Hub does not hold yet.") from exc
    result.uploaded = [u.path_in_repo for u in todo]
    result.commit_oid, result.commit_url = info.oid, info.commit_url


def _verify(api: Any, req: PublishRequest, uploads: list[Upload], result: PublishResult, relation: str | None) -> None:
    """List the new commit, compare every file's oid (GGUFs, checkpoint or adapter files, side files, card), parse the
    downloaded card (its lineage as rendered), and download one small file back."""
    from huggingface_hub import ModelCard, hf_hub_download

    remote = {f.path: (f.lfs.sha256 if f.lfs else f.blob_id) for f in api.list_repo_tree(req.repo, revision=result.commit_oid, recursive=True)
              if hasattr(f, "blob_id")}
    wrong = [u.path_in_repo for u in uploads if remote.get(u.path_in_repo) not in (u.sha256, u.git_oid)]
    if wrong:
        raise VerificationFailed(f"After the push, {', '.join(wrong)} on the Hub do not match the local sha256.", "Publish again with replace (--replace).")
    result.verified.append(f"{len(uploads)} files listed at {result.commit_oid} with matching sha256")
    card = ModelCard.load(hf_hub_download(req.repo, "README.md", revision=result.commit_oid, endpoint=api.endpoint, token=api.token))
    meta = card.data.to_dict()
    if meta.get("license") is None or meta.get("base_model_relation") != relation:
        raise VerificationFailed("The card downloaded back has no parsable front matter (or another lineage).", "Publish again with replace (--replace).")
    result.verified.append("card front matter parses")
    small = min((u for u in uploads if u.path_in_repo != "README.md"), key=lambda u: u.size)
    path = hf_hub_download(req.repo, small.path_in_repo, revision=result.commit_oid, endpoint=api.endpoint, token=api.token)
    if sha256_file(Path(path)) != small.sha256:
        raise VerificationFailed(f"{small.path_in_repo} downloaded back differs from the local file.", "Publish again with replace (--replace).")
    result.verified.append(f"{small.path_in_repo} downloaded back intact")
