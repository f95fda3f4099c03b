# Sourced by ./orrery and test/all: makes sure this machine has Node >= 22 (installing
# Node 24 from the npm registry when it has not) and the locked dependencies.
# Progress goes to stderr so that callers' stdout stays clean.
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 22 ]; then
  echo "orrery: node $(node --version 2>/dev/null || echo none) is too old; installing Node 24 from the npm registry" >&2
  npm i -g --force node@24 >&2
  hash -r
fi
# A symlinked node_modules belongs to another checkout (a git worktree sharing it): npm ci
# would empty that one, so it is left alone.
if [ -L node_modules ]; then
  :
elif [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "orrery: installing dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund >&2
fi
