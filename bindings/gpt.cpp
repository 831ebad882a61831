// mfcore._core face of the GPT sample engine: index builders (exposed for tests and tools), GPT and
// blended datasets, field options, the thread pool and bulk batch filling. No logic here: argument
// conversion, zero-copy arrays, GIL release, and SampleEngineError mapped onto DataError.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>

#include "mfcore/blended_dataset.h"
#include "mfcore/blending.h"
#include "mfcore/cache_publisher.h"
#include "mfcore/gpt_dataset.h"
#include "mfcore/gpt_indices.h"
#include "mfcore/gpt_split.h"
#include "mfcore/random.h"
#include "mfcore/sample_batch.h"
#include "mfcore/sample_error.h"
#include "registry.h"

namespace py = pybind11;
using namespace mfcore;

namespace {
// A read-only numpy view of an IndexArray; `owner` (the Python object holding it) stays alive.
py::array view(const IndexArray& a, py::handle owner) {
  py::dtype dt(index_type_name(a.type()));
  std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(a.rows())};
  if (a.cols() != 1) shape.push_back(static_cast<py::ssize_t>(a.cols()));
  static const int64_t empty = 0;
  py::array arr(dt, shape, {}, a.data() ? a.data() : &empty, owner);
  arr.attr("setflags")(py::arg("write") = false);
  return arr;
}

// Standalone arrays (built on request, no owner object): copied into numpy.
py::array copy_out(const IndexArray& a) {
  auto holder = std::make_unique<IndexArray>(a);
  py::capsule cap(holder.get(), [](void* p) { delete static_cast<IndexArray*>(p); });
  IndexArray* raw = holder.release();
  return view(*raw, cap);
}

// The document index as the spec's int32: a view when stored so, a widened copy when the ids are
// stored as uint16 (datasets of at most 65,536 documents).
py::array document_index_int32(const IndexArray& a, py::handle owner) {  // owner: kept alive by a view
  if (a.type() == IndexType::Int32) return view(a, owner);
  py::array_t<int32_t> out(static_cast<py::ssize_t>(a.size()));
  int32_t* dst = out.mutable_data();
  for (size_t i = 0; i < a.size(); ++i) dst[i] = static_cast<int32_t>(a.get(i));
  out.attr("setflags")(py::arg("write") = false);
  return out;
}

// The writable C-contiguous buffer of `obj` (None -> nullptr), checked for dtype and size.
template <class T>
T* out_ptr(const py::object& obj, py::ssize_t elements, const char* name) {
  if (obj.is_none()) return nullptr;
  py::array arr = py::cast<py::array>(obj);
  if (!arr.dtype().is(py::dtype::of<T>()) || !(arr.flags() & py::array::c_style) || !arr.writeable() ||
      arr.size() != elements) {
    throw std::invalid_argument(std::string(name) + ": expected a writable C-contiguous " +
                                std::string(py::str(py::dtype::of<T>())) + " array of " + std::to_string(elements) +
                                " elements");
  }
  return static_cast<T*>(arr.mutable_data());
}

using IndexVector = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

void bind_random(py::module_& m) {
  m.def("shuffle_inplace", [](uint32_t seed, py::array a) {
    NumpyRandom rng(seed);
    if (a.dtype().is(py::dtype::of<int32_t>())) rng.shuffle(out_ptr<int32_t>(a, a.size(), "a"), a.size());
    else if (a.dtype().is(py::dtype::of<uint32_t>())) rng.shuffle(out_ptr<uint32_t>(a, a.size(), "a"), a.size());
    else rng.shuffle(out_ptr<int64_t>(a, a.size(), "a"), a.size());
  }, py::arg("seed"), py::arg("array"));
  m.def("random_bounded", [](uint32_t seed, std::vector<uint64_t> maxes) {
    NumpyRandom rng(seed);
    for (auto& v : maxes) v = rng.bounded(v);
    return maxes;
  }, py::arg("seed"), py::arg("maxes"));
}

void bind_indices(py::module_& m) {
  m.def("parse_split", [](const std::string& s) {
    auto w = parse_split(s);
    return std::vector<double>(w.begin(), w.end());
  }, py::arg("split"));
  m.def("split_document_ranges", [](const std::string& split, int64_t n) {
    std::vector<std::optional<std::pair<int64_t, int64_t>>> out;
    for (const auto& r : split_document_ranges(parse_split(split), n)) {
      out.push_back(r.present ? std::optional<std::pair<int64_t, int64_t>>({r.begin, r.end}) : std::nullopt);
    }
    return out;
  }, py::arg("split"), py::arg("num_documents"));
  m.def("build_gpt_indices", [](py::array_t<int32_t, py::array::c_style | py::array::forcecast> sizes, int64_t begin,
                                int64_t end, int64_t seq_length, int add_extra_token, uint32_t seed,
                                std::optional<int64_t> num_samples, bool drop_last) {
    UnalignedArray<int32_t> s(reinterpret_cast<const uint8_t*>(sizes.data()), static_cast<size_t>(sizes.size()));
    GptIndexSpec spec{DocumentRange{true, begin, end}, seq_length, add_extra_token, seed,
                      num_samples.value_or(kUnsetNumSamples), drop_last};
    GptIndices ix;
    {
      py::gil_scoped_release release;
      ix = build_gpt_indices(s, spec);
    }
    py::dict d;
    const IndexArray& doc = ix.document_index;
    d["document_index"] = doc.type() == IndexType::Int32 ? copy_out(doc) : document_index_int32(doc, py::none());
    d["sample_index"] = copy_out(ix.sample_index);
    d["shuffle_index"] = copy_out(ix.shuffle_index);
    d["num_epochs"] = ix.plan.num_epochs;
    d["separate_last_epoch"] = ix.plan.separate_last_epoch;
    return d;
  }, py::arg("sizes"), py::arg("begin"), py::arg("end"), py::arg("seq_length"), py::arg("add_extra_token"),
     py::arg("seed"), py::arg("num_samples"), py::arg("drop_last") = true);
}

void bind_blending(py::module_& m) {
  m.def("normalize_weights", &normalize_weights, py::arg("weights"));
  m.def("blend_member_sizes", &blend_member_sizes, py::arg("weights"), py::arg("size"));
  m.def("blend_targets", &blend_targets, py::arg("weights"), py::arg("size"));
  auto blending_dict = [](const BlendingIndices& b) {
    py::dict d;
    d["dataset_index"] = copy_out(b.dataset_index);
    d["dataset_sample_index"] = copy_out(b.dataset_sample_index);
    d["counts"] = b.counts;
    return d;
  };
  m.def("build_blending_indices", [blending_dict](const std::vector<double>& w, int64_t size) {
    BlendingIndices b;
    {
      py::gil_scoped_release release;
      b = build_blending_indices(w, size);
    }
    return blending_dict(b);
  }, py::arg("weights"), py::arg("size"));
  m.def("build_exhaustive_blending_indices", [blending_dict](const std::vector<int64_t>& sizes) {
    return blending_dict(build_exhaustive_blending_indices(sizes));
  }, py::arg("sizes"));
}

void bind_options(py::module_& m) {
  py::class_<FieldOptions>(m, "FieldOptions")
      .def(py::init<>())
      .def_readwrite("seq_length", &FieldOptions::seq_length)
      .def_readwrite("add_extra_token", &FieldOptions::add_extra_token)
      .def_readwrite("pad_id", &FieldOptions::pad_id)
      .def_readwrite("has_eod", &FieldOptions::has_eod)
      .def_readwrite("eod_id", &FieldOptions::eod_id)
      .def_readwrite("eod_mask_loss", &FieldOptions::eod_mask_loss)
      .def_readwrite("reset_position_ids", &FieldOptions::reset_position_ids)
      .def_readwrite("reset_attention_mask", &FieldOptions::reset_attention_mask)
      .def_readwrite("create_attention_mask", &FieldOptions::create_attention_mask)
      .def_readwrite("compressed_eod_mask", &FieldOptions::compressed_eod_mask)
      .def_readwrite("eod_pad_length", &FieldOptions::eod_pad_length)
      .def("validate", &FieldOptions::validate);
  py::class_<ThreadPool, std::shared_ptr<ThreadPool>>(m, "ThreadPool")
      .def(py::init<size_t>(), py::arg("threads"))
      .def_property_readonly("num_threads", &ThreadPool::num_threads);
  m.def("hardware_threads", &hardware_threads);
}

void fill_batch_py(const SampleSource& src, const IndexVector& indices, const FieldOptions& o,
                   std::shared_ptr<ThreadPool> pool, py::object tokens, py::object labels, py::object loss_mask,
                   py::object position_ids, py::object attention_mask, py::object actual_seq_len) {
  const py::ssize_t n = indices.size(), L = o.seq_length;
  BatchOutputs out{{out_ptr<int32_t>(tokens, n * L, "tokens"),       out_ptr<int32_t>(labels, n * L, "labels"),
                    out_ptr<float>(loss_mask, n * L, "loss_mask"),   out_ptr<int32_t>(position_ids, n * L, "position_ids"),
                    out_ptr<uint8_t>(attention_mask, n * L * L, "attention_mask"),
                    out_ptr<int32_t>(actual_seq_len, n * o.eod_pad_length, "actual_seq_len")}};
  const int64_t* idx = indices.data();
  py::gil_scoped_release release;
  fill_batch(src, idx, n, o, out, pool.get());
}

void fill_text_py(const SampleSource& src, const IndexVector& indices, int32_t pad, std::shared_ptr<ThreadPool> pool,
                  py::object out) {
  const py::ssize_t n = indices.size(), width = src.seq_length() + src.add_extra_token();
  int32_t* dst = out_ptr<int32_t>(out, n * width, "out");
  const int64_t* idx = indices.data();
  py::gil_scoped_release release;
  fill_text(src, idx, n, pad, dst, pool.get());
}

void bind_sources(py::module_& m) {
  py::class_<SampleSource, std::shared_ptr<SampleSource>>(m, "SampleSource")
      .def("__len__", &SampleSource::size)
      .def_property_readonly("seq_length", &SampleSource::seq_length)
      .def_property_readonly("add_extra_token", &SampleSource::add_extra_token)
      .def("fingerprint", &SampleSource::fingerprint)
      .def("fill_batch", &fill_batch_py, py::arg("indices"), py::arg("options"), py::arg("pool"), py::arg("tokens"),
           py::arg("labels"), py::arg("loss_mask"), py::arg("position_ids"), py::arg("attention_mask"),
           py::arg("actual_seq_len"))
      .def("fill_text", &fill_text_py, py::arg("indices"), py::arg("pad"), py::arg("pool"), py::arg("out"));
  py::class_<GptDataset, SampleSource, std::shared_ptr<GptDataset>>(m, "GptDataset")
      .def_property_readonly("built", &GptDataset::built)
      .def_property_readonly("cache_path", &GptDataset::cache_path)
      .def_property_readonly("split", &GptDataset::split)
      .def_property_readonly("documents", [](const GptDataset& g) { return std::make_pair(g.documents().begin, g.documents().end); })
      .def_property_readonly("num_epochs", [](const GptDataset& g) { return g.indices().plan.num_epochs; })
      .def_property_readonly("separate_last_epoch", [](const GptDataset& g) { return g.indices().plan.separate_last_epoch; })
      .def_property_readonly("document_index", [](py::object s) {
        return document_index_int32(s.cast<const GptDataset&>().indices().document_index, s);
      })
      .def_property_readonly("sample_index", [](py::object s) { return view(s.cast<const GptDataset&>().indices().sample_index, s); })
      .def_property_readonly("shuffle_index", [](py::object s) { return view(s.cast<const GptDataset&>().indices().shuffle_index, s); });
  m.def("open_gpt_splits", [](const std::string& prefix, const std::string& split, int64_t seq_length, int add_extra_token,
                              uint32_t seed, std::vector<std::optional<int64_t>> num_samples, bool drop_last_valid,
                              const std::string& cache_dir) {
    GptDatasetConfig c{prefix, split, seq_length, add_extra_token, seed, {}, drop_last_valid, cache_dir};
    if (num_samples.size() != kNumSplits) throw std::invalid_argument("num_samples must have three entries");
    for (int k = 0; k < kNumSplits; ++k) c.num_samples[k] = num_samples[k].value_or(kUnsetNumSamples);
    py::gil_scoped_release release;
    auto splits = GptDataset::open_splits(c);
    return std::vector<std::shared_ptr<GptDataset>>(splits.begin(), splits.end());
  }, py::arg("prefix"), py::arg("split"), py::arg("seq_length"), py::arg("add_extra_token"), py::arg("seed"),
     py::arg("num_samples"), py::arg("drop_last_valid"), py::arg("cache_dir"));
  py::class_<BlendedDataset, SampleSource, std::shared_ptr<BlendedDataset>>(m, "BlendedDataset")
      .def_property_readonly("built", &BlendedDataset::built)
      .def_property_readonly("weights", &BlendedDataset::weights)
      .def_property_readonly("counts", [](const BlendedDataset& b) { return b.indices().counts; })
      .def_property_readonly("dataset_index", [](py::object s) { return view(s.cast<const BlendedDataset&>().indices().dataset_index, s); })
      .def_property_readonly("dataset_sample_index", [](py::object s) { return view(s.cast<const BlendedDataset&>().indices().dataset_sample_index, s); });
  m.def("open_blended", [](std::vector<std::shared_ptr<SampleSource>> members, const std::vector<double>& weights,
                           std::optional<int64_t> size, const std::string& cache_dir, const std::string& kind) {
    std::vector<std::shared_ptr<const SampleSource>> ms(members.begin(), members.end());
    py::gil_scoped_release release;
    return BlendedDataset::open(std::move(ms), weights, size.value_or(-1), cache_dir, kind);
  }, py::arg("members"), py::arg("weights"), py::arg("size"), py::arg("cache_dir"), py::arg("kind"));
}
}  // namespace

MFCORE_BINDING(gpt) {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> error;
  error.call_once_and_store_result([&]() {
    py::object data_error = py::module_::import("mfcore.errors").attr("DataError");
    return py::object(py::exception<SampleEngineError>(m, "SampleEngineError", data_error));
  });
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const SampleEngineError& e) {
      py::set_error(error.get_stored(), e.what());
    }
  });
  m.def("wait_for_index_cache_writes", &wait_for_index_cache_writes, py::call_guard<py::gil_scoped_release>());
  bind_random(m);
  bind_indices(m);
  bind_blending(m);
  bind_options(m);
  bind_sources(m);
}
