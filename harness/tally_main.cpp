// edgesync-tally: compares edgesync-unpack's NDJSON records with an
// edgesync-fleet manifest. Prints "summary: published=N arrived=N lost=N
// duplicates=N" on stdout (and unparsable/unexpected counts on stderr when
// there are any); exit 0 when nothing was lost, 1 when something was, 2 when
// the files cannot be read.
#include <CLI/CLI.hpp>
#include <cinttypes>
#include <cstdio>

#include "harness/tally.h"

int main(int argc, char** argv) {
  std::string records, manifest;
  CLI::App app{"Counts what arrived against what edgesync-fleet published"};
  app.add_option("--records", records, "edgesync-unpack NDJSON output")->required();
  app.add_option("--manifest", manifest, "edgesync-fleet --manifest output")->required();
  CLI11_PARSE(app, argc, argv);

  edgesync::Result<edgesync::harness::Tally> t = edgesync::harness::TallyFiles(records, manifest);
  if (!t.ok()) {
    std::fprintf(stderr, "edgesync-tally: %s\n", t.status().ToString().c_str());
    return 2;
  }
  if (t->unparsable != 0 || t->unexpected != 0) {
    std::fprintf(stderr, "edgesync-tally: %" PRIu64 " records without a device/seq key, %" PRIu64
                 " keys not in the manifest\n", t->unparsable, t->unexpected);
  }
  std::printf("%s\n", edgesync::harness::FormatSummary(*t).c_str());
  return t->lost == 0 ? 0 : 1;
}
