"""`msrvtt`: MSR-VTT annotation JSON {"videos": [{"video_id", "split", ...}], "sentences":
[{"video_id", "caption", "sen_id"?}]}; every caption of a video is kept (in sen_id order).
Videos are `{videos}/{video_id}.mp4`; --videos defaults to the JSON's folder."""
from __future__ import annotations

import collections
import json
import os

from data_pipelines.errors import UserError

from data_pipelines.sources.common import Skips, find_video, item, read_csv, read_json

VIDEO_FIELDS = ("split", "category", "url", "start time", "end time")


def read_items(input_path: str, videos_dir: str | None = None) -> tuple[list[dict], Skips]:
    data = read_json(input_path)
    if not isinstance(data, dict) or "videos" not in data or "sentences" not in data:
        raise UserError(f"--input {input_path}: expected an MSR-VTT JSON with 'videos' and 'sentences'")
    root = videos_dir or os.path.dirname(os.path.abspath(input_path))
    captions = collections.defaultdict(list)
    for s in data["sentences"]:
        captions[s.get("video_id")].append((s.get("sen_id", len(captions[s.get("video_id")])), s.get("caption", "")))
    items, skips = [], Skips()
    for video in data["videos"]:
        vid = video.get("video_id")
        texts = [c.strip() for _, c in sorted(captions.get(vid, []), key=lambda x: x[0]) if c and c.strip()]
        if not vid or not texts:
            skips.add("no_text" if vid else "bad_row", f"video {vid!r}: no captions" if vid else f"entry {video}")
            continue
        path = find_video(root, vid) or os.path.join(root, vid + ".mp4")
        metadata = {"source": "msrvtt", "video_id": vid, **{k.replace(" ", "_"): video[k] for k in VIDEO_FIELDS if k in video}}
        items.append(item(f"msrvtt-{vid}", path, texts, metadata=metadata))
    return items, skips


# The JSFusion 1k test list (Yu et al. 2018), as CLIP4Clip and most retrieval/captioning papers ship it:
# MSRVTT_JSFUS_test.csv with columns key,vid_key,video_id,sentence (one row per video, e.g.
# "ret0,msr7579,video7579,a girl wearing red top ..."). Only video_id is needed; its one sentence is not
# the reference set: every caption of that video comes from the MSR-VTT annotation JSON.
JSFUSION_COLUMNS = ("video_id",)


def read_jsfusion_ids(csv_path: str) -> list[str]:
    """The video ids of the list, in file order, each once."""
    ids = []
    for number, row in enumerate(read_csv(csv_path, JSFUSION_COLUMNS, "--jsfusion-csv"), 2):
        vid = (row.get("video_id") or "").strip()
        if not vid:
            raise UserError(f"--jsfusion-csv {csv_path}:{number}: empty video_id")
        if vid not in ids:
            ids.append(vid)
    if not ids:
        raise UserError(f"--jsfusion-csv {csv_path}: no rows")
    return ids


def write_jsfusion_eval(input_path: str, csv_path: str, out_dir: str, videos_dir: str | None = None) -> dict:
    """Write `out_dir/captions.jsonl`: one line {"video": path relative to out_dir, "captions": [all of the
    video's captions]} per video of the JSFusion list, in the list's order (the file `eval --benchmark
    caption|vidfactscore` and `eval fuse-references` read). Every listed video must be in the annotation
    JSON (MSRVTT_data.json / test_videodatainfo.json); videos not yet on disk are counted, not dropped."""
    wanted = read_jsfusion_ids(csv_path)
    by_id = {it["metadata"]["video_id"]: it for it in read_items(input_path, videos_dir)[0]}
    missing = [vid for vid in wanted if vid not in by_id]
    if missing:
        raise UserError(f"--jsfusion-csv {csv_path}: {len(missing)} of {len(wanted)} listed videos have no captions "
                        f"in {input_path} (first: {missing[0]}); MSRVTT_data.json (all 10k videos) or test_videodatainfo.json "
                        "holds them")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "captions.jsonl")
    absent = 0
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        for vid in wanted:
            it = by_id[vid]
            absent += not os.path.isfile(it["video_path"])
            video = os.path.relpath(os.path.abspath(it["video_path"]), os.path.abspath(out_dir))
            f.write(json.dumps({"video": video, "captions": it["captions"]}, ensure_ascii=False) + "\n")
    return {"path": path, "videos": len(wanted), "captions": sum(len(by_id[v]["captions"]) for v in wanted),
            "videos_not_found": absent}
