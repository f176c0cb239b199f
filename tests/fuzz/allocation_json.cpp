// Fuzz target: allocation.json text through LoadAllocationPlan against a small synthetic
// checkpoint (generated once per process).
#include "fuzz/fuzz_common.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/export/quant_plan.h"
#include "testing/synthetic_checkpoint.h"

namespace moeq::fuzz {

int AllocationJson(const uint8_t* data, size_t size) {
  static const std::unique_ptr<Checkpoint> ckpt = [] {
    const std::string dir = ScratchDir() + "/model";
    test::SyntheticCheckpointOptions o;
    o.layers = 2;
    o.experts = 4;
    if (!test::WriteSyntheticCheckpoint(dir, o).ok()) std::abort();
    auto c = Checkpoint::Open(dir);
    if (!c.ok()) std::abort();
    return std::move(*c);
  }();
  const std::string path = WriteInput(data, size, ".allocation.json");
  auto plan = LoadAllocationPlan(path, *ckpt);
  (void)plan;
  return 0;
}

}  // namespace moeq::fuzz

MOEQ_FUZZ_ENTRY(AllocationJson)
