// Uses the installed library: opens a checkpoint and prints its type, layer and tensor counts.
#include <cstdio>

#include "moeq/base/build_info.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/report/inspect.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: moeq_consumer MODEL_DIR\n");
    return 2;
  }
  auto ckpt = moeq::Checkpoint::Open(argv[1]);
  if (!ckpt.ok()) {
    std::fprintf(stderr, "%s\n", ckpt.status().ToString().c_str());
    return 1;
  }
  auto report = moeq::InspectCheckpoint(**ckpt);
  if (!report.ok()) return 1;
  std::printf("moeq %s: %s, %d layers, %lld tensors\n", moeq::kVersion,
              (*ckpt)->config().model_type.c_str(), static_cast<int>((*ckpt)->config().num_layers),
              static_cast<long long>((*report)["tensors"].get<int64_t>()));
  return 0;
}
