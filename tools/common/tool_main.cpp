// RunTool: the common edge of every moeq executable (options, logging, exit codes).
#include "tool_main.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iterator>
#include <sstream>

#include "moeq/base/build_info.h"
#include "moeq/base/git_version.h"
#include "moeq/base/json_reader.h"

namespace moeq::tool {
namespace {

std::string SnakeCase(std::string s) {
  for (char& c : s) {
    if (c == '-') c = '_';
  }
  return s;
}

std::string KebabCase(std::string s) {
  for (char& c : s) {
    if (c == '_') c = '-';
  }
  return s;
}

/// `--config file.json`: a flat JSON object whose keys are long flag names in snake_case (or
/// with hyphens). Values are strings, numbers, booleans or arrays of those. Unknown keys are
/// rejected by CLI11 (allow_config_extras(error)).
class JsonConfig : public CLI::Config {
 public:
  std::string to_config(const CLI::App* app, bool default_also, bool, std::string) const override {
    nlohmann::json j = nlohmann::json::object();
    for (const CLI::Option* opt : app->get_options()) {
      if (opt->get_lnames().empty() || !opt->get_configurable()) continue;
      const std::string key = SnakeCase(opt->get_lnames()[0]);
      if (opt->count() > 0) {
        j[key] = opt->results();
      } else if (default_also && !opt->get_default_str().empty()) {
        j[key] = opt->get_default_str();
      }
    }
    return j.dump(2);
  }

  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    const std::string text{std::istreambuf_iterator<char>(input), std::istreambuf_iterator<char>()};
    auto parsed = moeq::ParseJson(text, "--config");
    if (!parsed.ok())
      throw CLI::ConfigError(parsed.status().message(), CLI::ExitCodes::ConfigError);
    nlohmann::json j = std::move(*parsed);
    if (!j.is_object())
      throw CLI::ConfigError("--config: the file must hold a JSON object",
                             CLI::ExitCodes::ConfigError);
    std::vector<CLI::ConfigItem> config_items;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "schema" || it.key() == "version" || it.key() == "$comment") continue;
      CLI::ConfigItem item;
      item.name = KebabCase(it.key());
      auto add = [&](const nlohmann::json& v) {
        if (v.is_string()) {
          item.inputs.push_back(v.get<std::string>());
        } else if (v.is_boolean()) {
          item.inputs.push_back(v.get<bool>() ? "true" : "false");
        } else if (v.is_number()) {
          item.inputs.push_back(v.dump());
        } else {
          throw CLI::ConfigError(
              "--config: key '" + it.key() + "' must be a string, number, boolean or array",
              CLI::ExitCodes::ConfigError);
        }
      };
      if (it->is_array()) {
        for (const auto& v : *it) add(v);
      } else if (!it->is_null()) {
        add(*it);
      }
      config_items.push_back(std::move(item));
    }
    return config_items;
  }
};

nlohmann::json TypedValue(const std::string& s) {
  if (s == "true") return true;
  if (s == "false") return false;
  if (!s.empty()) {
    char* end = nullptr;
    const long long i = std::strtoll(s.c_str(), &end, 10);
    if (end && *end == '\0') return i;
    const double d = std::strtod(s.c_str(), &end);
    if (end && *end == '\0') return d;
  }
  return s;
}

nlohmann::json EffectiveOptions(const CLI::App& app) {
  nlohmann::json j = nlohmann::json::object();
  for (const CLI::Option* opt : app.get_options()) {
    std::string key;
    if (!opt->get_lnames().empty()) {
      key = opt->get_lnames()[0];
    } else if (!opt->get_name().empty() && opt->get_name()[0] != '-') {
      key = opt->get_name();
    } else {
      continue;
    }
    if (key == "help" || key == "config" || key == "version" || key == "log-level" ||
        key == "verbose" || key == "quiet") {
      continue;
    }
    key = SnakeCase(key);
    const bool is_flag = opt->get_expected_min() == 0;
    if (is_flag) {
      j[key] = opt->count() > 0 ? opt->as<bool>() : (opt->get_default_str() == "true");
      continue;
    }
    std::vector<std::string> vals = opt->results();
    if (vals.empty() && !opt->get_default_str().empty()) vals.push_back(opt->get_default_str());
    if (opt->get_items_expected_max() > 1) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& v : vals) arr.push_back(TypedValue(v));
      j[key] = arr;
    } else if (!vals.empty()) {
      j[key] = TypedValue(vals.back());
    } else {
      j[key] = nullptr;
    }
  }
  return j;
}

void SetupLogging(std::string_view name, const std::string& level) {
  spdlog::drop(std::string(name));  // RunTool may run more than once in a process (tests)
  auto logger = spdlog::stderr_color_mt(std::string(name));
  logger->set_pattern("%n: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace

int RunTool(int argc, char** argv, std::string_view name, std::string_view description,
            const std::function<void(CLI::App&)>& define_options,
            const std::function<Status(const ToolContext&)>& body) {
  // A full disk or a file-size limit must surface as a write error, not kill the process.
  std::signal(SIGXFSZ, SIG_IGN);

  CLI::App app{std::string(description), std::string(name)};
  app.option_defaults()->always_capture_default();
  app.config_formatter(std::make_shared<JsonConfig>());
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.set_config("--config", "", "JSON file of options; keys are long flag names in snake_case")
      ->check(CLI::ExistingFile);
  app.set_version_flag("--version", std::string(name) + " " + kVersion + " (" + kGitDescribe + ")");

  ToolContext ctx;
  std::string log_level = "info";
  bool verbose = false, quiet = false;
  app.add_option("--log-level", log_level, "Log level: trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_flag("-v,--verbose", verbose, "Same as --log-level debug");
  app.add_flag("-q,--quiet", quiet, "Same as --log-level warn");
  app.add_option("--threads", ctx.threads, "Worker threads (0 = all cores)")
      ->check(CLI::Range(0, 1024));
  app.add_flag("--force", ctx.force, "Replace an existing output");

  try {
    define_options(app);
    app.parse(argc, argv);
  } catch (const CLI::ConfigError& e) {
    std::string msg = e.what();
    const std::string extras = "INI was not able to parse ";
    if (msg.rfind(extras, 0) == 0) {
      msg = "--config: unknown key '" + SnakeCase(msg.substr(extras.size())) +
            "' (keys are the long flag names in snake_case; see --help)";
    }
    std::fprintf(stderr, "%s: error: %s\n", std::string(name).c_str(), msg.c_str());
    return 2;
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help, version or the error
    return code == 0 ? 0 : 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", std::string(name).c_str(), e.what());
    return 2;
  }

  if (verbose) log_level = "debug";
  if (quiet) log_level = "warn";
  SetupLogging(name, log_level);

  ctx.effective_options = EffectiveOptions(app);
  for (int i = 0; i < argc; ++i) {
    if (i) ctx.command_line += ' ';
    ctx.command_line += argv[i];
  }

  ctx.artifact.tool = std::string(name);
  ctx.artifact.command_line = ctx.command_line;
  ctx.artifact.options = ctx.effective_options;
  ctx.artifact.threads = ctx.threads;
  ctx.artifact.force = ctx.force;
  ctx.artifact.progress = log_level != "warn" && log_level != "error" && log_level != "off";

  Status status;
  try {
    status = body(ctx);
  } catch (const std::exception& e) {
    status = Status::Internal(std::string("unhandled exception: ") + e.what());
  }
  if (!status.ok()) {
    spdlog::error("{}", status.message());
    if (status.code() == StatusCode::kAlreadyExists)
      spdlog::info("note: pass --force to replace it");
  }
  spdlog::default_logger()->flush();
  return ExitCodeFor(status);
}

}  // namespace moeq::tool
