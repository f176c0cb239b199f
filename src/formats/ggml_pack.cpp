// ggml block bit packing (ggml_pack.h).
#include "moeq/formats/ggml_pack.h"

#include <cstring>

#include "moeq/base/half.h"

namespace moeq::ggml {

void PutF16(uint8_t* p, float v) {
  const uint16_t h = F32ToF16(v);
  p[0] = static_cast<uint8_t>(h & 0xff);
  p[1] = static_cast<uint8_t>(h >> 8);
}

void PackNibbles32(const uint8_t* q, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
}

void PackHighBits32(const uint8_t* q, uint8_t* qh) {
  uint32_t v = 0;
  for (int j = 0; j < 32; ++j) v |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
  for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(v >> (8 * k));
}

void PackScaleMinK4(const uint8_t* ls, const uint8_t* lm, uint8_t* q) {
  std::memset(q, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      q[j] |= ls[j];
      q[j + 4] |= lm[j];
    } else {
      q[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      q[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      q[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

void GetScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

void PackQ4KCodes(const uint8_t* q, uint8_t* qs) {
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l)
      qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
  }
}

void PackQ5KCodes(const uint8_t* q, uint8_t* qh, uint8_t* qs) {
  std::memset(qh, 0, 32);
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t lo = q[64 * c + l], hi = q[64 * c + 32 + l];
      qs[32 * c + l] = static_cast<uint8_t>((lo & 15) | ((hi & 15) << 4));
      if (lo & 16) qh[l] |= static_cast<uint8_t>(1u << (2 * c));
      if (hi & 16) qh[l] |= static_cast<uint8_t>(1u << (2 * c + 1));
    }
  }
}

void PackQ6KCodes(const uint8_t* q, uint8_t* ql, uint8_t* qh) {
  std::memset(ql, 0, 128);
  std::memset(qh, 0, 64);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    ql[64 * h + l + ((k & 1) ? 32 : 0)] |= static_cast<uint8_t>((q[e] & 15) << (k >= 2 ? 4 : 0));
    qh[32 * h + l] |= static_cast<uint8_t>((q[e] >> 4) << (2 * k));
  }
}

}  // namespace moeq::ggml
