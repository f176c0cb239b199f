// Matrix products straight from MLX affine-packed weights (private to src/engine).
//
// A PackedMatrix is a non-owning view of one quantized weight W [out, in]: per row, `in` codes
// of `bits` bits as a little-endian bit stream (MLX's uint32 words, read as bytes on a
// little-endian host), and per group of `group` consecutive codes one scale and one bias
// (bf16, f16 or f32 bit patterns). w[o, i] ≈ q[o, i] * scale[o, g] + bias[o, g].
//
// Each weight is dequantized in float32 as w = fma(q, scale, bias) and multiplied into one of 8
// (AVX2, portable) or 16 (AVX-512) lane accumulators; the lanes are summed by one fixed tree at
// the end. For one input row (decode) the codes are unpacked and dequantized in registers; for
// many (prefill) the dequantized weights of 8 or 16 rows are written once to a small float32
// panel that a register-blocked FMA kernel runs every input row against (qmatmul_kernel.h).
// See docs/inference.md for the tolerance against dequantize-then-multiply.
//
// Determinism: every output element is computed by one fixed sequence of operations that
// depends only on the ISA path and the shapes — not on the thread count, the output tile, the
// kernel or how many input rows are processed together (a token gives the same bits in a
// 512-token window and in a one-token decode step).
//
// Buffers: the code stream of a matrix must be followed by at least kPackedPadBytes readable
// bytes (the vector loads read up to 12 bytes past the last code).
#pragma once

#include <cstdint>
#include <string_view>

#include "moeq/base/cpu_features.h"

namespace moeq::engine {

/// Readable bytes required after every packed code buffer.
inline constexpr int64_t kPackedPadBytes = 64;

/// Scale/bias element type of a packed matrix.
enum class PackedScale : uint8_t { kBF16, kF16, kF32 };

struct PackedMatrix {
  int bits = 0;   ///< 2, 3, 4, 5, 6 or 8
  int group = 0;  ///< 32, 64 or 128
  PackedScale scale = PackedScale::kBF16;
  int64_t out = 0;
  int64_t in = 0;
  const uint8_t* codes = nullptr;  ///< out * in * bits / 8 bytes (+ kPackedPadBytes readable)
  const void* scales = nullptr;    ///< out * in / group elements
  const void* biases = nullptr;    ///< out * in / group elements

  bool valid() const { return codes != nullptr; }
  int64_t row_bytes() const { return in * bits / 8; }
  int64_t groups_per_row() const { return in / group; }
  int64_t scale_bytes() const { return scale == PackedScale::kF32 ? 4 : 2; }
  /// Bytes of codes + scales + biases (what a product reads).
  int64_t nbytes() const { return out * row_bytes() + 2 * out * groups_per_row() * scale_bytes(); }
  /// Format key: equal keys run the same kernel.
  int key() const { return bits * 1000 + group * 4 + static_cast<int>(scale); }
};

/// Instruction-set paths of the packed kernels: the library's one Isa (moeq/base/cpu_features.h).
using PackedIsa = Isa;

/// The path used by default: SelectIsa() — the best one the CPU supports (AVX-512 F+BW+VL+DQ,
/// AVX2+FMA, portable), lowered by MOEQ_ISA=portable|avx2|avx512 (MOEQ_ENGINE_KERNELS is the
/// deprecated older name).
PackedIsa DefaultPackedIsa();
/// True when this build and CPU can run `isa`.
bool PackedIsaAvailable(PackedIsa isa);
std::string_view PackedIsaName(PackedIsa isa);

/// Widest vector (lanes) and largest token block of any ISA's kernel (sizes the work buffer).
inline constexpr int64_t kPackedMaxWidth = 16;
inline constexpr int64_t kPackedMaxTokenBlock = 8;

/// Floats of the work buffer a kernel call on a matrix with `in` inputs needs (per thread):
/// accumulators, a float32 panel of kPackedMaxWidth dequantized rows, and 64-byte alignment.
inline int64_t PackedWorkFloats(int64_t in) {
  return kPackedMaxTokenBlock * kPackedMaxWidth * kPackedMaxWidth + kPackedMaxWidth * in + 16;
}

/// Arguments of one kernel call: outputs [o0, o1) of W for `rows` input rows.
struct PackedGemmArgs {
  const PackedMatrix* w = nullptr;
  const float* x = nullptr;  ///< [rows, x_stride], the first w->in values of each row used
  int64_t x_stride = 0;
  float* work = nullptr;  ///< PackedWorkFloats(w->in) floats, owned by the calling thread
  int64_t rows = 0;
  float* y = nullptr;  ///< y[r * y_stride + o] for o in [o0, o1)
  int64_t y_stride = 0;
  int64_t o0 = 0, o1 = 0;
};
using PackedGemmFn = void (*)(const PackedGemmArgs&);

/// The kernel for `w`'s format on `isa` (which must be available), or nullptr when the format
/// is unsupported (bits or group size outside the MLX set).
PackedGemmFn FindPackedGemm(const PackedMatrix& w, PackedIsa isa);

/// This thread's work buffer for a kernel call on a matrix with `in` inputs.
float* PackedWorkBuffer(int64_t in);

/// y [rows, w.out] (row stride y_stride) = x [rows, w.in] · Wᵀ, tiled over output rows and
/// run on up to `threads` threads; the result does not depend on `threads`.
void PackedGemm(const PackedMatrix& w, const float* x, int64_t rows, int64_t x_stride, float* y,
                int64_t y_stride, int threads, PackedIsa isa = DefaultPackedIsa());

}  // namespace moeq::engine
