#!/usr/bin/env bash
# The pipeline picture of README.md ("Pipeline picture"): kedro-viz's static build of this project,
# rendered by headless Chromium and cropped to the graph (docs/pipeline-picture.md).
#   bash docs/img/pipeline_picture.sh [pipeline] [output.png]    # from the project root, venv active
# Needs the dev extra (kedro-viz) and Chromium (Debian/Ubuntu: apt-get install -y chromium). Offline.
set -euo pipefail
PIPELINE=${1:-__default__}
OUT=${2:-docs/img/pipeline.png}
PORT=${PORT:-8765}
PYTHON=${PYTHON:-python}
export DO_NOT_TRACK=1 KEDRO_DISABLE_TELEMETRY=true MLFLOW_DISABLE_TELEMETRY=true

kedro viz build                                   # -> build/: index.html, assets/, api/ (the graph as JSON)
cp docs/img/pipeline_picture.html build/picture.html
# the page fetches api/... at run time, which file:// forbids: serve build/ locally
"$PYTHON" -m http.server "$PORT" --bind 127.0.0.1 --directory build >/dev/null 2>&1 &
server=$!
trap 'kill "$server"' EXIT
sleep 2
# --no-sandbox: Chromium refuses to run as root otherwise (containers); the page is our own build
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=2400,1500 \
  --virtual-time-budget=25000 --screenshot=build/picture.png "http://127.0.0.1:$PORT/picture.html?pid=$PIPELINE"
"$PYTHON" - build/picture.png "$OUT" <<'PY'
import sys

import numpy as np
from PIL import Image

shot = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
background = shot[-5, -5].astype(int)  # the canvas colour, bottom right
ink = np.abs(shot.astype(int) - background).sum(axis=-1) > 30
# the graph canvas starts at the first column that is canvas colour all the way down (right of
# kedro-viz's sidebar and toolbar); the version label at the top right is left out
canvas = (np.abs(shot[40:].astype(int) - background).sum(axis=-1) < 8).all(axis=0)
left = int(np.argmax(canvas))
ink[:, :left] = False
ink[:40, :] = False
rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
margin = 24
box = (max(cols[0] - margin, left), max(rows[0] - margin, 0), cols[-1] + margin, rows[-1] + margin)
Image.fromarray(shot).crop(box).save(sys.argv[2], optimize=True)
print(f"{sys.argv[2]}: {box[2] - box[0]} x {box[3] - box[1]} px")
PY
