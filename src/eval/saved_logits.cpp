// Saved reference distributions for moeq-eval (--save-logits / --reference-logits).
#include <cmath>
#include <cstring>

#include "moeq/base/artifact.h"
#include "moeq/base/json_reader.h"
#include "moeq/eval/eval.h"
#include "moeq/formats/safetensors.h"

namespace moeq {
namespace {

constexpr const char* kSchema = "moeq.reference_logits";

template <class T>
std::span<const std::byte> Bytes(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

template <class T>
Status ReadTensor(const SafetensorsFile& f, const char* name, DType dtype,
                  std::vector<int64_t> shape, std::vector<T>* out) {
  const TensorInfo* info = f.Find(name);
  if (!info)
    return Status::Corruption(f.path() + ": tensor '" + name +
                              "' missing (not a saved-logits file?)");
  if (info->dtype != dtype || info->shape != shape) {
    return Status::Corruption(f.path() + ": tensor '" + name + "': expected " +
                              std::string(DTypeName(dtype)) + " " + ShapeString(shape) +
                              ", found " + std::string(DTypeName(info->dtype)) + " " +
                              info->ShapeString());
  }
  MOEQ_ASSIGN_OR_RETURN(TensorView v, f.View(name));
  out->resize(static_cast<size_t>(info->numel()));
  if (!v.data.empty()) std::memcpy(out->data(), v.data.data(), v.data.size());
  return Status::Ok();
}

}  // namespace

Status WriteSavedLogits(const std::string& path, const SavedLogits& s, AtomicWriteOptions options) {
  const size_t n = static_cast<size_t>(s.tokens), k = static_cast<size_t>(s.top_k);
  if (s.ids.size() != n * k || s.logprobs.size() != n * k || s.rest_logprob.size() != n ||
      s.targets.size() != n || s.target_logprob.size() != n) {
    return Status::Internal(path + ": inconsistent saved-logits arrays");
  }
  nlohmann::json header = s.header;
  header["vocab_size"] = s.vocab;
  header["top_k"] = s.top_k;
  header["scored_tokens"] = s.tokens;
  std::vector<TensorInfo> infos = {{"ids", DType::kI32, {s.tokens, s.top_k}},
                                   {"logprobs", DType::kF32, {s.tokens, s.top_k}},
                                   {"rest_logprob", DType::kF32, {s.tokens}},
                                   {"targets", DType::kI32, {s.tokens}},
                                   {"target_logprob", DType::kF32, {s.tokens}}};
  MOEQ_ASSIGN_OR_RETURN(
      auto w,
      SafetensorsWriter::Create(
          path, infos, {{"format", "pt"}, {"moeq_schema", kSchema}, {"moeq_header", header.dump()}},
          options));
  MOEQ_RETURN_IF_ERROR(w->Write("ids", Bytes(s.ids)));
  MOEQ_RETURN_IF_ERROR(w->Write("logprobs", Bytes(s.logprobs)));
  MOEQ_RETURN_IF_ERROR(w->Write("rest_logprob", Bytes(s.rest_logprob)));
  MOEQ_RETURN_IF_ERROR(w->Write("targets", Bytes(s.targets)));
  MOEQ_RETURN_IF_ERROR(w->Write("target_logprob", Bytes(s.target_logprob)));
  return w->Finish();
}

Result<SavedLogits> ReadSavedLogits(const std::string& path) try {
  MOEQ_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(path));
  const auto& meta = f->metadata();
  auto schema = meta.find("moeq_schema");
  if (schema == meta.end() || schema->second != kSchema) {
    return Status::InvalidArgument(
        path + ": not a saved reference-logits file (metadata 'moeq_schema' is not " +
        std::string(kSchema) + "; write one with moeq-eval --save-logits)");
  }
  auto h = meta.find("moeq_header");
  if (h == meta.end()) return Status::Corruption(path + ": metadata 'moeq_header' missing");
  SavedLogits s;
  auto parsed = ParseJson(h->second, path + ": metadata 'moeq_header'");
  if (!parsed.ok()) return parsed.status();
  s.header = std::move(*parsed);
  if (!s.header.is_object())
    return Status::Corruption(path + ": metadata 'moeq_header' is not a JSON object");
  MOEQ_RETURN_IF_ERROR(CheckArtifactHeader(s.header, kSchema, 1, path));
  for (const char* key : {"vocab_size", "top_k", "scored_tokens"}) {
    if (!s.header.contains(key) || !s.header[key].is_number_integer() ||
        s.header[key].get<int64_t>() < 0) {
      return Status::Corruption(path + ": header field '" + key +
                                "' missing or not a non-negative integer");
    }
  }
  s.vocab = s.header["vocab_size"].get<int64_t>();
  s.top_k = s.header["top_k"].get<int64_t>();
  s.tokens = s.header["scored_tokens"].get<int64_t>();
  if (s.top_k < 1 || s.top_k > s.vocab) {
    return Status::Corruption(path + ": header field 'top_k' " + std::to_string(s.top_k) +
                              " not in [1, vocab_size]");
  }
  MOEQ_RETURN_IF_ERROR(ReadTensor(*f, "ids", DType::kI32, {s.tokens, s.top_k}, &s.ids));
  MOEQ_RETURN_IF_ERROR(ReadTensor(*f, "logprobs", DType::kF32, {s.tokens, s.top_k}, &s.logprobs));
  MOEQ_RETURN_IF_ERROR(ReadTensor(*f, "rest_logprob", DType::kF32, {s.tokens}, &s.rest_logprob));
  MOEQ_RETURN_IF_ERROR(ReadTensor(*f, "targets", DType::kI32, {s.tokens}, &s.targets));
  MOEQ_RETURN_IF_ERROR(
      ReadTensor(*f, "target_logprob", DType::kF32, {s.tokens}, &s.target_logprob));
  for (size_t i = 0; i < s.ids.size(); ++i) {
    if (s.ids[i] < 0 || s.ids[i] >= s.vocab) {
      return Status::Corruption(path + ": tensor 'ids': entry " + std::to_string(i) + " = " +
                                std::to_string(s.ids[i]) + " is outside the vocabulary");
    }
  }
  return s;
} catch (const nlohmann::json::exception& e) {
  return Status::Corruption(path + ": " + JsonExceptionText(e));
}

}  // namespace moeq
