// moeq-report: HTML content from synthetic artefacts, errors on bad input, and rendering in a
// real headless browser (Debian's chromium) checked from the DOM and a screenshot.
#include <gtest/gtest.h>
#include <zlib.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "moeq-report/report_command.h"
#include "moeq/artifacts/eval.h"
#include "moeq/base/file_util.h"
#include "testing/temp_dir.h"

namespace moeq {
namespace {

namespace fs = std::filesystem;
using moeq::test::ScopedTempDir;

void WriteText(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// Artefacts of a 2-layer model with 8 experts per layer, 3 expert projections.
struct Artefacts {
  ReportCommandOptions options;
};

Artefacts MakeArtefacts(const fs::path& dir) {
  Artefacts a;
  nlohmann::json profile = {
      {"schema", "moeq.routing_profile"},
      {"version", 1},
      {"model", {{"model_type", "qwen3_moe"}, {"num_experts", 8}, {"top_k", 2}}},
      {"calibration", {{"tokens", 100}, {"windows", 1}, {"context", 100}}},
      {"layers", nlohmann::json::array()}};
  for (int l = 0; l < 2; ++l) {
    nlohmann::json experts = nlohmann::json::array();
    for (int e = 0; e < 8; ++e)
      experts.push_back({{"expert", e}, {"count", 10 + 40 * ((e + l) % 4)}, {"gate_mass", 1.0}});
    profile["layers"].push_back(
        {{"layer", l}, {"moe", true}, {"tokens", 100}, {"experts", experts}});
  }
  WriteText(dir / "routing_profile.json", profile.dump());

  std::string sens = nlohmann::json({{"schema", "moeq.sensitivity"}, {"version", 1}}).dump() + "\n";
  nlohmann::json alloc = {{"schema", "moeq.allocation"},
                          {"version", 1},
                          {"result", {{"bytes", 123456}, {"objective", 1.5}, {"gap", 0.0001}}},
                          {"tensors", nlohmann::json::array()}};
  const char* formats[] = {"q2g32", "q4g64", "q8g64", "bf16"};
  const char* projections[] = {"gate_proj", "up_proj", "down_proj"};
  const char* roles[] = {"expert_gate", "expert_up", "expert_down"};
  int n = 0;
  for (int l = 0; l < 2; ++l) {
    for (int e = 0; e < 8; ++e) {
      for (int p = 0; p < 3; ++p, ++n) {
        const std::string name = "model.layers." + std::to_string(l) + ".mlp.experts." +
                                 std::to_string(e) + "." + projections[p] + ".weight";
        for (int f = 0; f < 4; ++f) {
          nlohmann::json row = {{"tensor", name},
                                {"role", roles[p]},
                                {"layer", l},
                                {"expert", e},
                                {"shape", {64, 128}},
                                {"params", 8192},
                                {"dtype", "BF16"},
                                {"format", formats[f]},
                                {"bits", f == 3 ? 16
                                                : (f == 0   ? 2
                                                   : f == 1 ? 4
                                                            : 8)},
                                {"group_size", f == 3 ? 0 : 64},
                                {"bytes", 1000 * (f + 1)},
                                {"nrmse", f == 3 ? 0.0 : 0.4 / (f + 1)},
                                {"sqnr_db", f == 3 ? 200.0 : 8.0 + 12 * f},
                                {"features",
                                 {{"stable_rank", 1.0 + n % 7},
                                  {"kurtosis", 0.1 * (n % 5)},
                                  {"tail_mass", 0.01 * (n % 9)}}}};
          sens += row.dump() + "\n";
        }
        alloc["tensors"].push_back(
            {{"name", name}, {"format", formats[(n % 3)]}, {"prune", n == 5}});
      }
    }
  }
  alloc["tensors"].push_back({{"name", "model.embed_tokens.weight"},
                              {"format", "q8g64"},
                              {"role", "embedding"},
                              {"layer", -1},
                              {"expert", -1}});
  alloc["tensors"].push_back({{"name", "model.layers.0.self_attn.q_proj.weight"},
                              {"format", "q4g64"},
                              {"role", "attn_q"},
                              {"layer", 0},
                              {"expert", -1}});
  WriteText(dir / "sensitivity.jsonl", sens);
  WriteText(dir / "allocation.json", alloc.dump());
  std::string curve = "bytes,objective\n";
  for (int i = 0; i <= 10; ++i)
    curve += std::to_string(1000000 + i * 100000) + "," + std::to_string(10.0 / (1 + i * i)) + "\n";
  WriteText(dir / "curve.csv", curve);
  // eval.json as moeq-eval writes it (moeq/artifacts/eval.h).
  auto eval_json = [](double ppl, double kl, double p99, double dppl, double top1) {
    artifacts::EvalArtifact e;
    e.header = {{"schema", "moeq.eval"}, {"version", 1}};
    e.ppl = ppl;
    e.tokens_scored = 1000;
    e.windows = 2;
    e.protocol = {{"name", "reference"}};
    e.text_sha256 = "0123";
    e.reference = artifacts::EvalReference{};
    e.reference->kl_mean = kl;
    e.reference->kl_p99 = p99;
    e.reference->ppl_delta_pct = dppl;
    e.reference->top1_agreement = top1;
    return artifacts::EvalToJson(e).dump();
  };
  WriteText(dir / "eval_q4.json", eval_json(90.5, 0.08, 0.5, 3.4, 0.9));
  WriteText(dir / "eval_mint.json", eval_json(88.1, 0.03, 0.2, 0.7, 0.95));
  a.options.profile = (dir / "routing_profile.json").string();
  a.options.sensitivity = (dir / "sensitivity.jsonl").string();
  a.options.allocation = (dir / "allocation.json").string();
  a.options.curve = (dir / "curve.csv").string();
  a.options.evals = {"uniform q4g64=" + (dir / "eval_q4.json").string(),
                     "MINT=" + (dir / "eval_mint.json").string()};
  a.options.output = (dir / "report.html").string();
  return a;
}

size_t Count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = 0; (pos = hay.find(needle, pos)) != std::string::npos; pos += needle.size())
    ++n;
  return n;
}

TEST(Report, ContainsEveryChartAndNoExternalReference) {
  ScopedTempDir dir;
  Artefacts a = MakeArtefacts(fs::path(dir.path()));
  auto html = BuildReportHtml(a.options, {});
  ASSERT_TRUE(html.ok()) << html.status().message();
  for (const char* id :
       {"chart-alloc-expert_gate", "chart-alloc-expert_up", "chart-alloc-expert_down",
        "chart-alloc-layers", "chart-routing", "chart-curve", "chart-feature-stable_rank",
        "chart-feature-kurtosis", "chart-sqnr-q4g64", "chart-eval-kl", "chart-eval-ppl"}) {
    EXPECT_NE(html->find(std::string("id=\"") + id + "\""), std::string::npos) << id;
  }
  // 3 projections × 2 layers × 8 experts located through the sensitivity file, 2 more tensors,
  // plus 16 routing cells.
  EXPECT_EQ(Count(*html, "class=\"cell\""), 3u * 16 + 2 + 16);
  EXPECT_NE(html->find("(pruned)"), std::string::npos);
  EXPECT_NE(html->find("class=\"marker\""), std::string::npos);  // the knee
  EXPECT_EQ(html->find("src=\""), std::string::npos);
  EXPECT_EQ(html->find("<script"), std::string::npos);
  EXPECT_EQ(Count(*html, "http"), Count(*html, "http://www.w3.org/2000/svg"));
  // Deterministic.
  auto again = BuildReportHtml(a.options, {});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*html, *again);
}

TEST(Report, EvalComparisonTableAsTextAndMarkdown) {
  ScopedTempDir dir;
  Artefacts a = MakeArtefacts(fs::path(dir.path()));
  auto text = EvalComparisonTable(a.options.evals, "text", "uniform q4g64");
  ASSERT_TRUE(text.ok()) << text.status().message();
  // Header, rule, two rows; MINT's KL is 0.03 / 0.08 = 0.375 of the baseline's.
  EXPECT_EQ(Count(*text, "\n"), 4u);
  EXPECT_NE(text->find("KL / uniform q4g64"), std::string::npos);
  EXPECT_NE(text->find("0.375"), std::string::npos) << *text;
  EXPECT_NE(text->find("88.100"), std::string::npos) << *text;
  EXPECT_NE(text->find("95.00"), std::string::npos) << *text;  // top-1 in percent
  auto md = EvalComparisonTable(a.options.evals, "markdown", "");
  ASSERT_TRUE(md.ok());
  EXPECT_EQ(md->rfind("| model", 0), 0u) << *md;
  EXPECT_NE(md->find("---: |"), std::string::npos) << *md;
  EXPECT_EQ(md->find("KL /"), std::string::npos);
  EXPECT_EQ(Count(*md, "\n"), 4u);
  // Errors: an unknown baseline label, an unknown format, no evals.
  auto bad = EvalComparisonTable(a.options.evals, "text", "nope");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("nope"), std::string::npos);
  EXPECT_FALSE(EvalComparisonTable(a.options.evals, "csv", "").ok());
  EXPECT_FALSE(EvalComparisonTable({}, "text", "").ok());
}

TEST(Report, BadInputsAreErrorsNamingTheFile) {
  ScopedTempDir dir;
  Artefacts a = MakeArtefacts(fs::path(dir.path()));
  ReportCommandOptions none;
  EXPECT_EQ(BuildReportHtml(none, {}).status().code(), StatusCode::kInvalidArgument);

  ReportCommandOptions o;
  o.curve = (fs::path(dir.path()) / "bad.csv").string();
  WriteText(o.curve, "bytes,objective\n10,abc\n");
  auto r = BuildReportHtml(o, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bad.csv:2"), std::string::npos) << r.status().message();

  o = {};
  o.sensitivity = (fs::path(dir.path()) / "s.jsonl").string();
  WriteText(o.sensitivity, "{\"schema\":\"moeq.sensitivity\",\"version\":1}\n{\"tensor\":\"a\"}\n");
  r = BuildReportHtml(o, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("s.jsonl:2: field 'format': missing"), std::string::npos)
      << r.status().message();

  o = {};
  o.evals = {(fs::path(dir.path()) / "allocation.json").string()};  // wrong schema
  r = BuildReportHtml(o, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expected 'moeq.eval'"), std::string::npos);

  // An existing output needs --force.
  WriteText(a.options.output, "old");
  ArtifactContext ctx;
  EXPECT_FALSE(RunReport(a.options, ctx).ok());
  ctx.force = true;
  ASSERT_TRUE(RunReport(a.options, ctx).ok());
  auto text = ReadFile(a.options.output);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->rfind("<!DOCTYPE html>", 0), 0u);
}

TEST(Report, RefusesArtefactsOfDifferentModelsUnlessAllowed) {
  ScopedTempDir dir("moeq-report-match");
  Artefacts a = MakeArtefacts(fs::path(dir.path()));
  // Give the sensitivity file and the allocation different model fingerprints.
  auto sens = ReadFile(a.options.sensitivity);
  ASSERT_TRUE(sens.ok());
  const size_t eol = sens->find('\n');
  nlohmann::json h = nlohmann::json::parse(sens->substr(0, eol));
  h["inputs"] = {{"model_fingerprint", "aaaa"}};
  WriteText(a.options.sensitivity, h.dump() + sens->substr(eol));
  auto alloc_text = ReadFile(a.options.allocation);
  ASSERT_TRUE(alloc_text.ok());
  nlohmann::json alloc = nlohmann::json::parse(*alloc_text);
  alloc["inputs"] = {{"model_fingerprint", "bbbb"}};
  WriteText(a.options.allocation, alloc.dump());
  auto r = BuildReportHtml(a.options, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ExitCodeFor(r.status()), 2);
  for (const std::string& want :
       {a.options.sensitivity, a.options.allocation, std::string("aaaa"), std::string("bbbb")}) {
    EXPECT_NE(r.status().message().find(want), std::string::npos) << r.status().message();
  }
  a.options.allow_model_mismatch = true;
  auto allowed = BuildReportHtml(a.options, {});
  EXPECT_TRUE(allowed.ok()) << allowed.status().ToString();
  alloc["inputs"] = {{"model_fingerprint", "aaaa"}};
  WriteText(a.options.allocation, alloc.dump());
  a.options.allow_model_mismatch = false;
  EXPECT_TRUE(BuildReportHtml(a.options, {}).ok());
}

// --- Rendering in a real browser -------------------------------------------------------------

struct Image {
  int width = 0, height = 0;
  std::vector<std::array<uint8_t, 3>> rgb;
};

uint32_t Be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Minimal PNG decoder for 8-bit RGB/RGBA non-interlaced images (what chromium writes).
bool DecodePng(const std::string& data, Image* img, std::string* error) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  if (data.size() < 8 || data.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) {
    *error = "not a PNG";
    return false;
  }
  size_t pos = 8;
  int color_type = -1, depth = 0, interlace = 0;
  std::string idat;
  while (pos + 12 <= data.size()) {
    const uint32_t len = Be32(p + pos);
    const std::string type = data.substr(pos + 4, 4);
    if (pos + 12 + len > data.size()) break;
    const unsigned char* c = p + pos + 8;
    if (type == "IHDR") {
      img->width = static_cast<int>(Be32(c));
      img->height = static_cast<int>(Be32(c + 4));
      depth = c[8];
      color_type = c[9];
      interlace = c[12];
    } else if (type == "IDAT") {
      idat.append(reinterpret_cast<const char*>(c), len);
    }
    pos += 12 + len;
  }
  if (depth != 8 || (color_type != 2 && color_type != 6) || interlace != 0) {
    *error = "unsupported PNG (depth " + std::to_string(depth) + ", colour type " +
             std::to_string(color_type) + ")";
    return false;
  }
  const int bpp = color_type == 6 ? 4 : 3;
  const size_t stride = static_cast<size_t>(img->width) * bpp;
  std::vector<unsigned char> raw((stride + 1) * static_cast<size_t>(img->height));
  uLongf raw_len = raw.size();
  if (uncompress(raw.data(), &raw_len, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) !=
          Z_OK ||
      raw_len != raw.size()) {
    *error = "zlib inflate failed";
    return false;
  }
  std::vector<unsigned char> prev(stride, 0), cur(stride);
  img->rgb.resize(static_cast<size_t>(img->width) * static_cast<size_t>(img->height));
  for (int y = 0; y < img->height; ++y) {
    const unsigned char* line = raw.data() + static_cast<size_t>(y) * (stride + 1);
    const int filter = line[0];
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= static_cast<size_t>(bpp) ? cur[i - bpp] : 0;
      const int b = prev[i];
      const int c = i >= static_cast<size_t>(bpp) ? prev[i - bpp] : 0;
      int v = line[1 + i];
      switch (filter) {
        case 1:
          v += a;
          break;
        case 2:
          v += b;
          break;
        case 3:
          v += (a + b) / 2;
          break;
        case 4: {
          const int pa = std::abs(b - c), pb = std::abs(a - c), pc = std::abs(a + b - 2 * c);
          v += (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
          break;
        }
        default:
          break;
      }
      cur[i] = static_cast<unsigned char>(v);
    }
    for (int x = 0; x < img->width; ++x) {
      const unsigned char* px = cur.data() + static_cast<size_t>(x) * bpp;
      img->rgb[static_cast<size_t>(y) * img->width + x] = {px[0], px[1], px[2]};
    }
    std::swap(prev, cur);
  }
  return true;
}

std::string FindChromium() {
  if (const char* env = std::getenv("MOEQ_CHROMIUM")) return env;
  for (const char* c :
       {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"}) {
    if (fs::exists(c)) return c;
  }
  return "";
}

TEST(Report, RendersInHeadlessChromium) {
  const std::string chromium = FindChromium();
  if (chromium.empty()) {
    GTEST_SKIP() << "no chromium found (install Debian's 'chromium' or set MOEQ_CHROMIUM): "
                    "skipping the browser rendering test";
  }
  ScopedTempDir dir;
  Artefacts a = MakeArtefacts(fs::path(dir.path()));
  ArtifactContext ctx;
  ASSERT_TRUE(RunReport(a.options, ctx).ok());
  const std::string url = "file://" + fs::absolute(a.options.output).string();
  const std::string common =
      "timeout 120 " + chromium +
      " --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run"
      " --user-data-dir=" +
      (fs::path(dir.path()) / "profile").string() + " --window-size=1280,2400 ";
  const std::string png = (fs::path(dir.path()) / "shot.png").string();
  const std::string dom = (fs::path(dir.path()) / "dom.html").string();
  ASSERT_EQ(std::system((common + "--screenshot=" + png + " " + url + " >/dev/null 2>&1").c_str()),
            0)
      << "chromium failed to take a screenshot";
  ASSERT_EQ(std::system((common + "--dump-dom " + url + " >" + dom + " 2>/dev/null").c_str()), 0);

  // The DOM the browser built has every chart.
  auto dom_text = ReadFile(dom);
  ASSERT_TRUE(dom_text.ok());
  for (const char* id : {"chart-alloc-expert_down", "chart-routing", "chart-curve",
                         "chart-feature-stable_rank", "chart-eval-kl"}) {
    EXPECT_NE(dom_text->find(std::string("id=\"") + id + "\""), std::string::npos) << id;
  }
  EXPECT_GE(Count(*dom_text, "class=\"cell\""), 60u);

  // The screenshot is not blank and shows the heatmap colours.
  auto bytes = ReadFile(png);
  ASSERT_TRUE(bytes.ok());
  Image img;
  std::string error;
  ASSERT_TRUE(DecodePng(*bytes, &img, &error)) << error;
  EXPECT_EQ(img.width, 1280);
  size_t non_white = 0;
  std::set<uint32_t> colors;
  bool has_8bit_green = false, has_2bit_red = false;
  for (const auto& px : img.rgb) {
    if (px[0] < 245 || px[1] < 245 || px[2] < 245) ++non_white;
    colors.insert((uint32_t{px[0]} << 16) | (uint32_t{px[1]} << 8) | px[2]);
    has_8bit_green |= px[0] == 30 && px[1] == 150 && px[2] == 80;
    has_2bit_red |= px[0] == 215 && px[1] == 48 && px[2] == 39;
  }
  EXPECT_GT(static_cast<double>(non_white) / static_cast<double>(img.rgb.size()), 0.03);
  EXPECT_GT(colors.size(), 50u);
  EXPECT_TRUE(has_8bit_green) << "the 8-bit cells of the allocation heatmap are not visible";
  EXPECT_TRUE(has_2bit_red) << "the 2-bit cells of the allocation heatmap are not visible";
}

}  // namespace
}  // namespace moeq
