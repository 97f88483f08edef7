#!/usr/bin/env bash
# The two halves and what they share, as the include graph and the linked
# programs show them:
#   format/   the format both sides share: includes only base/ and format/
#   device    agent/ buffer/ sync/ plugins/ fleet/: never central/
#   central/  edgesync-unpack: only base/, format/ and central/
# and the device's program holds none of the central service's code. A
# module's internals stay inside it: buffer/'s public headers are sealer.h
# and store.h (the journal and the SQLite VFS are its own), the agent's
# parts (intake, monitor, pipeline, triage, ...) are the agent's; its status
# socket (agent/status_socket.h) is how others ask it. The broker plugin,
# loaded into mosquitto, holds the configuration, the chains and the
# spool's writer only: it adds no Kafka, MQTT client, SQLite or libssl
# library to the broker's process (mosquitto loads libssl itself), and none
# of the agent's own machinery (intake, sealer, store, uploader, ...).
#   layout_test.sh SOURCE_DIR EDGESYNC_BINARY [BROKER_PLUGIN]
set -euo pipefail
src=$1
agent=$2
plugin=${3:-}
fail=0

# Lines `#include "dir/..."` of the files under $1 naming a directory not in $2.
check() {
  local dir=$1 allowed=$2 hits
  hits=$(grep -rnE '^#include "[a-z_]+/' "$src/$dir" --include='*.h' --include='*.cpp' --include='*.c' |
         grep -vE "#include \"($allowed)/" || true)
  if [[ -n $hits ]]; then
    echo "$dir/ includes what it must not (allowed: $allowed):"
    echo "$hits"
    fail=1
  fi
}
check format 'base|format'
check central 'base|format|central'
for dir in agent buffer sync plugins fleet base; do
  hits=$(grep -rnE '^#include "central/' "$src/$dir" --include='*.h' --include='*.cpp' || true)
  if [[ -n $hits ]]; then
    echo "$dir/ (device side) includes central/:"
    echo "$hits"
    fail=1
  fi
done

# Internal headers, included only by their own module (tests and benchmarks
# may look inside; the exceptions are named).
internal() {
  local header=$1 owner=$2 except=${3:-} hits
  hits=$(grep -rnE "^#include \"$header\"" "$src"/{agent,buffer,sync,plugins,fleet,central,harness,format,base} \
           --include='*.h' --include='*.cpp' | grep -v "^$src/$owner/" || true)
  local ex
  for ex in $except; do hits=$(grep -v "^$src/$ex:" <<<"$hits" || true); done
  if [[ -n $hits ]]; then
    echo "$header is internal to $owner/, but is included from outside it:"
    echo "$hits"
    fail=1
  fi
}
# The broker plugin's spool (agent/spool.cpp writes it, spool_reader.cpp
# reads it) is a journal directory written by another process: it uses the
# journal's segment code.
internal buffer/journal.h buffer "agent/spool.cpp agent/spool_reader.cpp"
internal buffer/sqlite_vfs.h buffer
for part in intake monitor pipeline triage toml_bounds logging health; do
  internal "agent/$part.h" agent
done

# No symbol of FILE matches PATTERN (it links WHAT), while nm can see
# symbols at all: MARKER must be there (a stripped file would pass anything).
#   no_symbols FILE MARKER PATTERN WHAT
no_symbols() {
  local file=$1 marker=$2 pattern=$3 what=$4 symbols hits
  symbols=$(nm -C "$file")
  if ! grep -q "$marker" <<<"$symbols"; then
    echo "$file: no edgesync symbols visible to nm; cannot check"
    fail=1
  fi
  hits=$(grep -E "$pattern" <<<"$symbols" || true)
  if [[ -n $hits ]]; then
    echo "$file links $what:"
    head -20 <<<"$hits"
    fail=1
  fi
}

# Symbols only central/ defines must not be in the device's program.
no_symbols "$agent" 'edgesync::SealEnvelope' \
  'edgesync::(SequenceTracker|Unpacker|FragmentAssembler|DeviceKeyRegistry|DedupeStore|RestoreState|StateKey)' \
  'central code'

if [[ -n $plugin ]]; then
  needed=$(readelf -d "$plugin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  if ! grep -q '^libc\.so' <<<"$needed"; then
    echo "$plugin: no NEEDED entries read; cannot check"
    fail=1
  fi
  unwanted=$(grep -E '^lib(rdkafka|mosquitto|sqlite3|ssl)' <<<"$needed" || true)
  if [[ -n $unwanted ]]; then
    echo "$plugin loads into the broker what only the agent needs:"
    echo "$unwanted"
    fail=1
  fi
  no_symbols "$plugin" 'edgesync::SpoolWriter::' \
    'edgesync::(Uploader|Store|EnvVfs|Sealer|Ingest|Intake|SpoolReader|Agent|Monitor|StatusSocket|Rollout)::' \
    "the agent's own code"
else
  echo "no broker plugin given (not built here): its libraries are not checked"
fi
exit $fail
