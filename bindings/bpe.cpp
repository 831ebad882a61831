// mfcore._core face of the native byte-level BPE engine. No logic here: argument conversion, GIL
// release, ids copied into numpy arrays, an unsupported tokenizer reported as ValueError.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <tuple>

#include "mfcore/bpe_encoder.h"
#include "registry.h"

namespace py = pybind11;
using namespace mfcore;

namespace {
using Vocab = std::vector<std::pair<std::string, uint32_t>>;
using Merges = std::vector<std::pair<std::string, std::string>>;
// (content, id, normalized, plain): plain = no lstrip / rstrip / single_word.
using AddedList = std::vector<std::tuple<std::string, uint32_t, bool, bool>>;

AddedTokens added_tokens_of(const AddedList& list) {
  AddedTokens added;
  for (const auto& [content, id, normalized, plain] : list)
    (!plain ? added.detect_only : normalized ? added.normalized : added.raw).push_back({content, id});
  return added;
}

std::unique_ptr<BpeEncoder> make_encoder(const Vocab& vocab, const Merges& merges, bool ignore_merges,
                                         const std::vector<std::string>& splits,
                                         const AddedList& added_tokens) {
  try {
    return std::make_unique<BpeEncoder>(BpeModel(vocab, merges, ignore_merges), splits,
                                        added_tokens_of(added_tokens));
  } catch (const RegexUnsupported& e) {
    throw py::value_error(e.what());
  } catch (const BpeUnsupported& e) {
    throw py::value_error(e.what());
  }
}

// (ids arrays with None for documents left to the caller, the status name of every document).
py::tuple encode_batch(BpeEncoder& encoder, const py::list& texts, size_t threads) {
  std::vector<std::string_view> views(texts.size());
  std::vector<bool> invalid(texts.size(), false);
  for (size_t k = 0; k < views.size(); ++k) {
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(texts[k].ptr(), &size);
    if (data == nullptr) {  // not a str, or lone surrogates: tokenizers reports those
      PyErr_Clear();
      invalid[k] = true;
      continue;
    }
    views[k] = std::string_view(data, size_t(size));
  }
  std::vector<std::vector<uint32_t>> ids;
  std::vector<BpeStatus> status;
  {
    py::gil_scoped_release release;
    encoder.encode_batch(views, threads, ids, status);
  }
  py::list arrays(views.size()), names(views.size());
  for (size_t k = 0; k < views.size(); ++k) {
    if (invalid[k]) status[k] = BpeStatus::kInvalidText;
    names[k] = bpe_status_name(status[k]);
    if (status[k] != BpeStatus::kOk) {
      arrays[k] = py::none();
      continue;
    }
    py::array_t<int32_t> out(py::ssize_t(ids[k].size()));
    int32_t* dst = out.mutable_data();
    for (size_t i = 0; i < ids[k].size(); ++i) dst[i] = int32_t(ids[k][i]);
    arrays[k] = std::move(out);
  }
  return py::make_tuple(arrays, names);
}
}  // namespace

MFCORE_BINDING(bpe) {
  py::class_<BpeEncoder>(m, "BpeEncoder", "Native byte-level BPE encoder (ids identical to tokenizers').")
      .def(py::init(&make_encoder), py::arg("vocab"), py::arg("merges"), py::arg("ignore_merges"),
           py::arg("split_patterns"), py::arg("added_tokens"))
      .def("encode_batch", &encode_batch, py::arg("texts"), py::arg("threads") = 1,
           "Encodes a list of str; returns (list of int32 arrays or None, list of status names).");
  m.def(
      "bpe_check_regex",
      [](const std::string& pattern) {
        try {
          Regex re(pattern);
        } catch (const RegexUnsupported& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("pattern"), "Raises ValueError when the native matcher does not support `pattern`.");
  m.def(
      "bpe_regex_split",
      [](const std::string& pattern, const std::string& text) {
        DecodedText d;
        if (!decode_utf8(text.data(), text.size(), d)) throw py::value_error("text is not valid UTF-8");
        std::unique_ptr<Regex> re;
        try {
          re = std::make_unique<Regex>(pattern);
        } catch (const RegexUnsupported& e) {
          throw py::value_error(e.what());
        }
        std::vector<py::bytes> out;
        for (auto [b, e] : split_isolated(*re, d.cps.data(), d.cps.size()))
          out.emplace_back(text.substr(d.offsets[b], d.offsets[e] - d.offsets[b]));
        return out;
      },
      py::arg("pattern"), py::arg("text"), "The Split(Isolated) pieces of `text` (UTF-8 bytes), for tests.");
  m.def("unicode_table_version", &unicode_table_version, "Unicode version of the native category table.");
}
