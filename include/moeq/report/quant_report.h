// Uniform-quantization error report of a checkpoint: for each candidate format, what storing
// every quantizable tensor in it would cost (bytes, bits per weight) and how much error it
// would cause (aggregate NRMSE, worst and mean SQNR, tensors under the SQNR safety floor).
// The baseline every mixed-precision plan is compared against; shown by `moeq-inspect
// --quant-report` and `make demo`.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/checkpoint/checkpoint.h"
#include "moeq/quant/quant_format.h"

namespace moeq {

struct QuantReportOptions {
  /// Candidate formats; empty = the MINT grid (configs/mint_grid.json's defaults).
  std::vector<const quant::FormatTraits*> formats;
  /// Tensors under this SQNR are counted as unsafe (MINT's veto threshold).
  double sqnr_floor_db = 9.0;
  int threads = 0;
  bool progress = true;
};

/// The MINT grid: q2g32, q3g64, q4g32, q4g64, q4g128, q8g64, q8g128 and 16-bit.
std::vector<const quant::FormatTraits*> MintGridFormats();

/// Reads the whole checkpoint once (tensor by tensor) and measures every format.
Result<nlohmann::json> QuantReport(const Checkpoint& checkpoint, const QuantReportOptions& options);

/// A readable table of a QuantReport.
std::string FormatQuantReportTable(const nlohmann::json& report);

}  // namespace moeq
