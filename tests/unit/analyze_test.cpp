// moeq-analyze: features against direct references, determinism, sharding, clustering, errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "moeq-analyze/analyze_command.h"
#include "moeq/base/build_info.h"
#include "moeq/base/file_util.h"
#include "moeq/sensitivity/features.h"
#include "testing/synthetic_checkpoint.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

using nlohmann::json;

std::vector<float> RandomMatrix(int64_t rows, int64_t cols, uint64_t seed) {
  analyze::Gaussian g(seed);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& x : w) x = static_cast<float>(g.Next());
  return w;
}

/// Columns of a random n × r matrix, orthonormalised (modified Gram-Schmidt twice), column-major.
std::vector<double> RandomOrthonormal(int64_t n, int64_t r, uint64_t seed) {
  const std::vector<float> a = RandomMatrix(r, n, seed);
  std::vector<double> q(a.begin(), a.end());
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t j = 0; j < r; ++j) {
      double* cj = q.data() + j * n;
      for (int64_t i = 0; i < j; ++i) {
        const double* ci = q.data() + i * n;
        double d = 0;
        for (int64_t t = 0; t < n; ++t) d += ci[t] * cj[t];
        for (int64_t t = 0; t < n; ++t) cj[t] -= d * ci[t];
      }
      double nn = 0;
      for (int64_t t = 0; t < n; ++t) nn += cj[t] * cj[t];
      for (int64_t t = 0; t < n; ++t) cj[t] /= std::sqrt(nn);
    }
  }
  return q;
}

/// W = U diag(sigma) Vᵀ with random orthonormal U, V.
std::vector<float> KnownSpectrum(int64_t rows, int64_t cols, const std::vector<double>& sigma,
                                 uint64_t seed) {
  const int64_t r = static_cast<int64_t>(sigma.size());
  const std::vector<double> U = RandomOrthonormal(rows, r, seed),
                            V = RandomOrthonormal(cols, r, seed + 1);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double s = 0;
      for (int64_t k = 0; k < r; ++k)
        s += U[static_cast<size_t>(k * rows + i)] * sigma[static_cast<size_t>(k)] *
             V[static_cast<size_t>(k * cols + j)];
      w[static_cast<size_t>(i * cols + j)] = static_cast<float>(s);
    }
  return w;
}

/// Reference singular values (descending): one-sided Jacobi SVD in double, to convergence.
std::vector<double> FullSvd(const std::vector<float>& w, int64_t rows, int64_t cols) {
  // Work on the columns of Wᵀ when rows < cols so that there are min(rows, cols) columns.
  const bool tr = rows < cols;
  const int64_t m = tr ? cols : rows, n = tr ? rows : cols;
  std::vector<double> a(static_cast<size_t>(m * n));  // column-major m × n
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const double v = w[static_cast<size_t>(i * cols + j)];
      if (tr)
        a[static_cast<size_t>(i * m + j)] = v;
      else
        a[static_cast<size_t>(j * m + i)] = v;
    }
  for (int sweep = 0; sweep < 60; ++sweep) {
    double off = 0;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = p + 1; q < n; ++q) {
        double* cp = a.data() + p * m;
        double* cq = a.data() + q * m;
        double al = 0, be = 0, ga = 0;
        for (int64_t t = 0; t < m; ++t) {
          al += cp[t] * cp[t];
          be += cq[t] * cq[t];
          ga += cp[t] * cq[t];
        }
        if (std::abs(ga) <= 1e-15 * std::sqrt(al * be)) continue;
        off = std::max(off, std::abs(ga) / std::sqrt(al * be));
        const double zeta = (be - al) / (2 * ga);
        const double t = (zeta >= 0 ? 1.0 : -1.0) / (std::abs(zeta) + std::sqrt(1 + zeta * zeta));
        const double c = 1 / std::sqrt(1 + t * t), s = c * t;
        for (int64_t k = 0; k < m; ++k) {
          const double x = cp[k], y = cq[k];
          cp[k] = c * x - s * y;
          cq[k] = s * x + c * y;
        }
      }
    if (off < 1e-14) break;
  }
  std::vector<double> sv(static_cast<size_t>(n));
  for (int64_t p = 0; p < n; ++p) {
    double s = 0;
    for (int64_t t = 0; t < m; ++t)
      s += a[static_cast<size_t>(p * m + t)] * a[static_cast<size_t>(p * m + t)];
    sv[static_cast<size_t>(p)] = std::sqrt(s);
  }
  std::sort(sv.rbegin(), sv.rend());
  return sv;
}

TEST(AnalyzeFeatures, ExactSpectrumMatchesFullSvd) {
  const int64_t rows = 48, cols = 80;
  std::vector<float> w = RandomMatrix(rows, cols, 7);
  for (int64_t j = 0; j < cols; ++j)
    w[static_cast<size_t>(3 * cols + j)] *= 6.0f;  // a dominant row
  const std::vector<double> ref = FullSvd(w, rows, cols);
  const analyze::SpectralFeatures f = analyze::ComputeSpectral(w, rows, cols, {256, 10, 2, 1}, 1);
  ASSERT_EQ(f.k, 48);
  double fro = 0;
  for (float x : w) fro += static_cast<double>(x) * x;
  for (int i = 0; i < f.k; ++i)
    EXPECT_NEAR(f.sigma[static_cast<size_t>(i)], ref[static_cast<size_t>(i)], 1e-6 * ref[0]) << i;
  EXPECT_NEAR(f.stable_rank, fro / (ref[0] * ref[0]), 1e-6);
  double tail = 0, total = 0;
  for (int i = 0; i < 48; ++i) {
    total += ref[static_cast<size_t>(i)] * ref[static_cast<size_t>(i)];
    if (i >= 4) tail += ref[static_cast<size_t>(i)] * ref[static_cast<size_t>(i)];
  }
  EXPECT_NEAR(f.tail_mass, tail / total, 1e-6);
  EXPECT_NEAR(f.log_spectral_spread, std::log(ref[0] / ref[47]), 1e-5);
}

TEST(AnalyzeFeatures, RandomizedSvdRecoversKnownSpectrum) {
  const int64_t rows = 400, cols = 300;
  std::vector<double> sigma(120);
  for (size_t i = 0; i < sigma.size(); ++i)
    sigma[i] = 10.0 * std::pow(0.95, static_cast<double>(i));
  const std::vector<float> w = KnownSpectrum(rows, cols, sigma, 11);
  const analyze::SpectralFeatures f = analyze::ComputeSpectral(w, rows, cols, {20, 10, 2, 3}, 2);
  ASSERT_EQ(f.k, 20);
  EXPECT_NEAR(f.sigma_max, 10.0, 1e-4);
  for (int i = 0; i < 10; ++i)
    EXPECT_NEAR(f.sigma[static_cast<size_t>(i)], sigma[static_cast<size_t>(i)], 2e-3 * sigma[0])
        << i;
  double fro = 0;
  for (double s : sigma) fro += s * s;
  EXPECT_NEAR(f.stable_rank, fro / 100.0, 1e-3 * fro / 100.0);
  // The same seed gives the same bits for any thread count.
  const analyze::SpectralFeatures f1 = analyze::ComputeSpectral(w, rows, cols, {20, 10, 2, 3}, 1);
  EXPECT_EQ(f.sigma, f1.sigma);
}

double BruteKurtosis(const float* p, int n) {
  double m = 0;
  for (int i = 0; i < n; ++i) m += p[i];
  m /= n;
  double m2 = 0, m4 = 0;
  for (int i = 0; i < n; ++i) {
    m2 += std::pow(p[i] - m, 2);
    m4 += std::pow(p[i] - m, 4);
  }
  m2 /= n;
  m4 /= n;
  return m4 / (m2 * m2) - 3.0;
}

TEST(AnalyzeFeatures, GroupKurtosisMatchesBruteForce) {
  const int64_t rows = 16, cols = 256;
  std::vector<float> w = RandomMatrix(rows, cols, 5);
  w[5 * 256 + 17] = 40.0f;  // outliers in two groups
  w[11 * 256 + 200] = -35.0f;
  const analyze::DistributionFeatures f = analyze::ComputeDistribution(w, rows, cols, 128, 2);
  std::vector<double> k;
  for (int64_t r = 0; r < rows; ++r)
    for (int g = 0; g < 2; ++g) k.push_back(BruteKurtosis(w.data() + r * cols + g * 128, 128));
  ASSERT_EQ(f.groups, 32);
  double km = 0, kv = 0;
  for (double x : k) km += x;
  km /= 32;
  for (double x : k) kv += (x - km) * (x - km);
  const double thr = km + 3 * std::sqrt(kv / 32);
  int out = 0;
  for (double x : k) out += x > thr;
  std::sort(k.begin(), k.end());
  auto pct = [&](double q) {
    const double pos = q * 31;
    const int lo = static_cast<int>(pos);
    return k[static_cast<size_t>(lo)] +
           (k[static_cast<size_t>(std::min(lo + 1, 31))] - k[static_cast<size_t>(lo)]) * (pos - lo);
  };
  EXPECT_NEAR(f.group_p90, pct(0.9), 1e-9);
  EXPECT_NEAR(f.group_p99_minus_p50, pct(0.99) - pct(0.5), 1e-9);
  EXPECT_NEAR(f.group_max_minus_median, k.back() - pct(0.5), 1e-9);
  EXPECT_DOUBLE_EQ(f.outlier_group_fraction, out / 32.0);
  EXPECT_EQ(out, 2);
  EXPECT_NEAR(f.kurtosis, BruteKurtosis(w.data(), static_cast<int>(w.size())), 1e-9);
  EXPECT_GT(f.kurtosis, 10.0);
}

TEST(AnalyzeFeatures, NoiseAmplificationOfScaledWeightsIsTheScale) {
  const int64_t rows = 32, cols = 64;
  const std::vector<float> w = RandomMatrix(rows, cols, 9);
  std::vector<float> hat = w;
  for (float& x : hat) x *= 1.25f;
  std::vector<float> gamma(cols);
  for (int64_t c = 0; c < cols; ++c)
    gamma[static_cast<size_t>(c)] = 0.1f + 0.05f * static_cast<float>(c);
  EXPECT_NEAR(analyze::NoiseAmplification(w, hat, rows, cols, gamma, 32, 4, 1), 0.25, 1e-5);
  // A residual in one input column matters in proportion to that column's gamma.
  std::vector<float> hat2 = w;
  for (int64_t r = 0; r < rows; ++r) hat2[static_cast<size_t>(r * cols)] += 1.0f;
  std::vector<float> g_lo = gamma, g_hi = gamma;
  g_lo[0] = 0.01f;
  g_hi[0] = 3.0f;
  EXPECT_LT(analyze::NoiseAmplification(w, hat2, rows, cols, g_lo, 32, 4, 1),
            analyze::NoiseAmplification(w, hat2, rows, cols, g_hi, 32, 4, 1) * 0.1);
}

TEST(AnalyzeFeatures, KMeansIsDeterministicAndFindsBlobs) {
  std::vector<double> pts;
  analyze::Gaussian g(3);
  const double centers[3][2] = {{0, 0}, {10, 0}, {0, 10}};
  for (int i = 0; i < 30; ++i) {
    pts.push_back(centers[i % 3][0] + 0.1 * g.Next());
    pts.push_back(centers[i % 3][1] + 0.1 * g.Next());
  }
  const std::vector<int> a = analyze::KMeans(pts, 30, 2, 3, 17);
  EXPECT_EQ(a, analyze::KMeans(pts, 30, 2, 3, 17));
  for (int i = 0; i < 30; ++i)
    EXPECT_EQ(a[static_cast<size_t>(i)], i % 3) << i;  // numbered by smallest member
}

// ---- end to end ----

ArtifactContext Ctx(int threads) {
  ArtifactContext c;
  c.tool = "moeq-analyze";
  c.threads = threads;
  c.progress = false;
  return c;
}

std::string Slurp(const std::string& p) {
  auto r = ReadFile(p);
  return r.ok() ? *r : std::string();
}

std::vector<json> Rows(const std::string& p) {
  std::vector<json> out;
  std::istringstream is(Slurp(p));
  for (std::string l; std::getline(is, l);) out.push_back(json::parse(l));
  return out;
}

class AnalyzeEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    test::SyntheticCheckpointOptions so;
    so.experts = 40;
    so.top_k = 2;
    // Every last dimension is a multiple of 128, so every grid config and the q4g64 noise
    // probe apply to every matrix.
    so.hidden = 128;
    so.moe_ff = 128;
    so.layers = 3;
    so.vocab = 128;
    ASSERT_TRUE(test::WriteSyntheticCheckpoint(model_, so).ok());
  }
  AnalyzeCommandOptions Opts(const std::string& out) {
    AnalyzeCommandOptions o;
    o.model_dir = model_;
    o.output = dir_.Join(out);
    o.rank = 16;
    return o;
  }
  test::ScopedTempDir dir_{"moeq-analyze"};
  std::string model_ = dir_.Join("model");
};

TEST_F(AnalyzeEndToEnd, ThreadsShardsAndClusters) {
  AnalyzeCommandOptions o1 = Opts("t1.jsonl");
  o1.csv = dir_.Join("t1.csv");
  ASSERT_TRUE(RunAnalyze(o1, Ctx(1)).ok());
  AnalyzeCommandOptions o2 = Opts("t2.jsonl");
  ASSERT_TRUE(RunAnalyze(o2, Ctx(2)).ok());
  const std::string full = Slurp(o1.output);
  ASSERT_FALSE(full.empty());
  EXPECT_EQ(full, Slurp(o2.output));

  // Shards 0/2 and 1/2 merged (given in reverse order) equal the unsharded file.
  for (int i = 0; i < 2; ++i) {
    AnalyzeCommandOptions s = Opts("s" + std::to_string(i) + ".jsonl");
    s.shard = std::to_string(i) + "/2";
    ASSERT_TRUE(RunAnalyze(s, Ctx(2)).ok());
  }
  AnalyzeMergeOptions m{dir_.Join("merged.jsonl"), {dir_.Join("s1.jsonl"), dir_.Join("s0.jsonl")}};
  const Status ms = RunAnalyzeMerge(m, Ctx(1));
  ASSERT_TRUE(ms.ok()) << ms.message();
  EXPECT_EQ(Slurp(m.output), full);
  // Incomplete or duplicated shard sets are refused.
  AnalyzeMergeOptions bad{dir_.Join("bad.jsonl"), {dir_.Join("s0.jsonl")}};
  EXPECT_EQ(RunAnalyzeMerge(bad, Ctx(1)).code(), StatusCode::kInvalidArgument);
  bad.inputs = {dir_.Join("s0.jsonl"), dir_.Join("s0.jsonl")};
  EXPECT_EQ(RunAnalyzeMerge(bad, Ctx(1)).code(), StatusCode::kInvalidArgument);

  const std::vector<json> rows = Rows(o1.output);
  EXPECT_EQ(rows[0]["schema"], "moeq.sensitivity");
  EXPECT_EQ(rows[0]["options"]["grid"].size(), 8u);
  // Every (layer, expert role) has 8..16 clusters covering all 40 experts exactly once.
  std::map<std::pair<int, std::string>, std::map<int, std::set<int>>> clusters;
  std::set<std::string> tensors;
  for (size_t i = 1; i < rows.size(); ++i) {
    const json& r = rows[i];
    tensors.insert(r["tensor"].get<std::string>());
    ASSERT_TRUE(r.contains("nrmse") && r.contains("sqnr_db") && r.contains("bytes"));
    ASSERT_TRUE(r["features"].contains("noise_amplification"));
    if (r["role"] == "expert_down" || r["role"] == "expert_gate" || r["role"] == "expert_up") {
      ASSERT_TRUE(r.contains("cluster")) << r["tensor"];
      const json& c = r["cluster"];
      auto& m2 = clusters[{r["layer"].get<int>(), r["role"].get<std::string>()}];
      for (int e : c["members"]) m2[c["id"].get<int>()].insert(e);
      EXPECT_NE(std::find(c["members"].begin(), c["members"].end(), r["expert"]),
                c["members"].end());
      EXPECT_EQ(c["bytes"].get<uint64_t>(), r["bytes"].get<uint64_t>() * c["members"].size());
    } else {
      EXPECT_FALSE(r.contains("cluster"));
    }
  }
  EXPECT_EQ(clusters.size(), 9u);
  for (const auto& [key, cl] : clusters) {
    EXPECT_GE(cl.size(), 8u);
    EXPECT_LE(cl.size(), 16u);
    std::set<int> all;
    for (const auto& [id, mem] : cl) all.insert(mem.begin(), mem.end());
    EXPECT_EQ(all.size(), 40u);
  }
  // 3 layers × (q, k, v, o, router + 3 × 40 experts) + embeddings + lm_head, 8 configs each.
  EXPECT_EQ(tensors.size(), 3u * (5 + 120) + 2);
  EXPECT_EQ(rows.size() - 1, tensors.size() * 8);
  // The CSV has one line per row plus its header.
  const std::string csv = Slurp(o1.csv);
  EXPECT_EQ(static_cast<size_t>(std::count(csv.begin(), csv.end(), '\n')), rows.size());
}

TEST_F(AnalyzeEndToEnd, AllExpertsAnalysesEveryExpert) {
  AnalyzeCommandOptions o = Opts("all.jsonl");
  o.all_experts = true;
  ASSERT_TRUE(RunAnalyze(o, Ctx(2)).ok());
  const std::vector<json> rows = Rows(o.output);
  for (size_t i = 1; i < rows.size(); ++i) EXPECT_FALSE(rows[i].contains("cluster"));
  EXPECT_EQ(rows.size() - 1, (3u * 125 + 2) * 8);
}

// Conservative aggregation: a clustered member's NRMSE / SQNR in each config are the max / min
// of its cluster's members' own figures (as --all-experts measures them), named by worst_member.
TEST_F(AnalyzeEndToEnd, ClusterFiguresAreTheWorstMembers) {
  AnalyzeCommandOptions oc = Opts("clustered.jsonl");
  ASSERT_TRUE(RunAnalyze(oc, Ctx(2)).ok());
  AnalyzeCommandOptions oa = Opts("every.jsonl");
  oa.all_experts = true;
  ASSERT_TRUE(RunAnalyze(oa, Ctx(2)).ok());
  std::map<std::pair<std::string, std::string>, json> own;  // (tensor, format) -> row
  const std::vector<json> every = Rows(oa.output);
  for (size_t i = 1; i < every.size(); ++i)
    own[{every[i]["tensor"], every[i]["format"]}] = every[i];
  const std::vector<json> rows = Rows(oc.output);
  int checked = 0, above_representative = 0;
  for (size_t i = 1; i < rows.size(); ++i) {
    const json& r = rows[i];
    if (!r.contains("cluster")) continue;
    const json& c = r["cluster"];
    const std::string tensor = r["tensor"], format = r["format"];
    auto name_of = [&](int e) {
      std::string t = tensor;
      const std::string mark = ".experts." + std::to_string(r["expert"].get<int>()) + ".";
      t.replace(t.find(mark), mark.size(), ".experts." + std::to_string(e) + ".");
      return t;
    };
    double max_nrmse = 0, min_sqnr = 1e300;
    for (int e : c["members"]) {
      const json& m = own.at({name_of(e), format});
      max_nrmse = std::max(max_nrmse, m["nrmse"].get<double>());
      min_sqnr = std::min(min_sqnr, m["sqnr_db"].get<double>());
    }
    EXPECT_DOUBLE_EQ(r["nrmse"].get<double>(), max_nrmse) << tensor << " " << format;
    EXPECT_DOUBLE_EQ(r["sqnr_db"].get<double>(), min_sqnr) << tensor << " " << format;
    const json& worst = own.at({name_of(c["worst_member"].get<int>()), format});
    EXPECT_DOUBLE_EQ(worst["nrmse"].get<double>(), max_nrmse);
    above_representative +=
        max_nrmse >
        own.at({name_of(c["representative"].get<int>()), format})["nrmse"].get<double>();
    ++checked;
  }
  EXPECT_EQ(checked, 3 * 3 * 40 * 8);
  EXPECT_GT(above_representative, 0);  // the aggregation is not vacuous
}

TEST(AnalyzeFused, FusedSlicesMatchPerExpertTensors) {
  test::ScopedTempDir dir("moeq-analyze-fused");
  test::SyntheticCheckpointOptions so;
  so.hidden = 64;
  so.moe_ff = 64;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.Join("a"), so).ok());
  so.fused_experts = true;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.Join("b"), so).ok());
  std::map<std::tuple<int, int, std::string, std::string>, json> per;
  for (const char* m : {"a", "b"}) {
    AnalyzeCommandOptions o;
    o.model_dir = dir.Join(m);
    o.output = dir.Join(std::string(m) + ".jsonl");
    ASSERT_TRUE(RunAnalyze(o, Ctx(2)).ok());
    const std::vector<json> rows = Rows(o.output);
    for (size_t i = 1; i < rows.size(); ++i) {
      const json& r = rows[i];
      if (r["role"] != "expert_down") continue;
      EXPECT_EQ(r["shape"], json::array({64, 64}));
      if (std::string(m) == "b") {
        EXPECT_EQ(r["fused_shape"], json::array({4, 64, 64}));
      }
      auto key = std::make_tuple(r["layer"].get<int>(), r["expert"].get<int>(),
                                 r["format"].get<std::string>(), std::string(m));
      per[key] = r;
    }
  }
  int compared = 0;
  for (const auto& [k, ra] : per) {
    if (std::get<3>(k) != "a") continue;
    const json& rb = per.at({std::get<0>(k), std::get<1>(k), std::get<2>(k), "b"});
    EXPECT_EQ(ra["nrmse"], rb["nrmse"]);
    EXPECT_EQ(ra["bytes"], rb["bytes"]);
    EXPECT_EQ(ra["features"]["stable_rank"], rb["features"]["stable_rank"]);
    ++compared;
  }
  // The last dimension is 64: the two g128 configs do not divide it and are left out.
  EXPECT_EQ(compared, 2 * 4 * 6);
}

TEST(AnalyzeErrors, BadInputsAreUsageErrors) {
  test::ScopedTempDir dir("moeq-analyze-err");
  test::SyntheticCheckpointOptions so;
  ASSERT_TRUE(test::WriteSyntheticCheckpoint(dir.Join("m"), so).ok());
  AnalyzeCommandOptions o;
  o.model_dir = dir.Join("m");
  o.output = dir.Join("o.jsonl");
  o.grid = dir.Join("missing_grid.json");
  Status s = RunAnalyze(o, Ctx(1));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("missing_grid.json"), std::string::npos) << s.message();
  o.grid.clear();
  o.shard = "3/2";
  s = RunAnalyze(o, Ctx(1));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("3/2"), std::string::npos) << s.message();
  EXPECT_FALSE(ParseShardSpec("1/").ok());
  EXPECT_FALSE(ParseShardSpec("x/2").ok());
  EXPECT_TRUE(ParseShardSpec("1/2").ok());
  o.shard.clear();
  ASSERT_TRUE(WriteFileAtomic(
                  dir.Join("grid.json"),
                  R"({"schema": "moeq.mint_grid", "version": 1, "configs": [{"format": "q7g64"}]})")
                  .ok());
  o.grid = dir.Join("grid.json");
  s = RunAnalyze(o, Ctx(1));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("configs[0]"), std::string::npos) << s.message();
  EXPECT_FALSE(std::ifstream(o.output).good());  // nothing written
}

}  // namespace
}  // namespace moeq
