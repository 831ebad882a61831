// mfcore._core face of the indexed dataset engine (reader, builder, merge, checks). No logic here:
// argument conversion, GIL release, and the C++ error mapped onto mfcore.errors.DataError.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>

#include "mfcore/indexed_builder.h"
#include "mfcore/indexed_dataset.h"
#include "mfcore/indexed_merge.h"
#include "registry.h"

namespace py = pybind11;
using namespace mfcore;

namespace {
// A read-only uint8 numpy array over mapped bytes; `owner` stays alive as long as the array does.
py::array mapped_bytes(const uint8_t* data, size_t size, py::handle owner) {
  static const uint8_t empty = 0;
  py::array arr(py::dtype::of<uint8_t>(), {size}, {1}, data ? data : &empty, owner);
  arr.attr("setflags")(py::arg("write") = false);
  return arr;
}

std::vector<std::string> messages(const std::vector<DatasetProblem>& problems) {
  std::vector<std::string> out;
  for (const auto& p : problems) out.push_back(p.message());
  return out;
}

// The C++ side writes out_bytes contiguously from ptr: anything but a C-contiguous buffer would be
// overrun (a negative-stride view starts at its last element).
bool c_contiguous(const py::buffer_info& info) {
  py::ssize_t expected = info.itemsize;
  for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
    if (info.shape[d] > 1 && info.strides[d] != expected) return false;
    expected *= info.shape[d];
  }
  return true;
}

const void* tokens_of(const py::buffer_info& info, DType dtype) {
  if (info.ndim != 1 || !c_contiguous(info) || static_cast<size_t>(info.itemsize) != dtype_size(dtype))
    throw std::invalid_argument(std::string("tokens must be a contiguous 1-D buffer of ") + dtype_name(dtype));
  return info.ptr;
}

void bind_reader(py::module_& m) {
  py::class_<IndexedDataset, std::shared_ptr<IndexedDataset>>(m, "IndexedDataset")
      .def(py::init<const std::string&, bool>(), py::arg("prefix"), py::arg("multimodal") = false,
           py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("prefix", &IndexedDataset::prefix)
      .def_property_readonly("multimodal", &IndexedDataset::multimodal)
      .def_property_readonly("dtype_name", [](const IndexedDataset& d) { return dtype_name(d.dtype()); })
      .def_property_readonly("itemsize", &IndexedDataset::itemsize)
      .def_property_readonly("num_sequences", &IndexedDataset::num_sequences)
      .def_property_readonly("num_documents", &IndexedDataset::num_documents)
      .def_property_readonly("num_tokens", &IndexedDataset::num_tokens)
      .def_property_readonly("lengths_offset", [](const IndexedDataset& d) { return d.layout().lengths_offset; })
      .def_property_readonly("pointers_offset", [](const IndexedDataset& d) { return d.layout().pointers_offset; })
      .def_property_readonly("document_indices_offset",
                             [](const IndexedDataset& d) { return d.layout().document_indices_offset; })
      .def_property_readonly("modes_offset", [](const IndexedDataset& d) { return d.layout().modes_offset; })
      .def("idx_bytes", [](py::object self) {
        const auto& d = self.cast<const IndexedDataset&>();
        return mapped_bytes(d.idx_data(), d.idx_size(), self);
      })
      .def("bin_bytes", [](py::object self) {
        const auto& d = self.cast<const IndexedDataset&>();
        return mapped_bytes(d.bin_data(), d.bin_size(), self);
      })
      .def("read_into",
           [](const IndexedDataset& d, py::array_t<int64_t, py::array::c_style> seqs,
              py::array_t<int64_t, py::array::c_style> offsets, py::array_t<int64_t, py::array::c_style> lengths,
              py::buffer out) {
             if (seqs.size() != offsets.size() || seqs.size() != lengths.size())
               throw std::invalid_argument("indices, offsets and lengths must have the same size");
             py::buffer_info o = out.request(/*writable=*/true);
             if (!c_contiguous(o)) throw std::invalid_argument("read_into: out must be C-contiguous");
             size_t bytes = static_cast<size_t>(o.size) * static_cast<size_t>(o.itemsize);
             py::gil_scoped_release release;
             d.read_many(seqs.data(), offsets.data(), lengths.data(), static_cast<size_t>(seqs.size()), o.ptr, bytes);
           },
           py::arg("indices"), py::arg("offsets"), py::arg("lengths"), py::arg("out"));
}

void bind_builder(py::module_& m) {
  py::class_<IndexedDatasetBuilder>(m, "IndexedDatasetBuilder")
      .def(py::init([](const std::string& prefix, const std::string& dtype, bool multimodal) {
             return std::make_unique<IndexedDatasetBuilder>(prefix, dtype_from_name(dtype), multimodal);
           }),
           py::arg("prefix"), py::arg("dtype"), py::arg("multimodal") = false)
      .def("add_sequence",
           [](IndexedDatasetBuilder& b, py::buffer tokens, int8_t mode) {
             py::buffer_info info = tokens.request();
             const void* ptr = tokens_of(info, b.dtype());
             py::gil_scoped_release release;
             b.add_sequence(ptr, static_cast<size_t>(info.size), mode);
           },
           py::arg("tokens"), py::arg("mode") = 0)
      .def("end_document", &IndexedDatasetBuilder::end_document)
      .def("finalize", &IndexedDatasetBuilder::finalize, py::call_guard<py::gil_scoped_release>())
      .def("abort", &IndexedDatasetBuilder::abort)
      .def_property_readonly("prefix", &IndexedDatasetBuilder::prefix)
      .def_property_readonly("num_sequences", &IndexedDatasetBuilder::num_sequences)
      .def_property_readonly("num_documents", &IndexedDatasetBuilder::num_documents)
      .def_property_readonly("finished", &IndexedDatasetBuilder::finished);
}
}  // namespace

MFCORE_BINDING(indexed_dataset) {
  // The Python class subclasses mfcore.errors.DataError, so users catch one family of errors.
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> error;
  error.call_once_and_store_result([&]() {
    py::object data_error = py::module_::import("mfcore.errors").attr("DataError");
    return py::object(py::exception<IndexedDatasetError>(m, "IndexedDatasetError", data_error));
  });
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const IndexedDatasetError& e) {
      py::set_error(error.get_stored(), e.what());
    }
  });
  bind_reader(m);
  bind_builder(m);
  m.def("merge_datasets", &merge_datasets, py::arg("out_prefix"), py::arg("prefixes"), py::arg("multimodal") = false,
        py::call_guard<py::gil_scoped_release>());
  m.def("check_dataset",
        [](const std::string& prefix, bool multimodal, size_t max_problems) {
          return messages(check_dataset(prefix, multimodal, max_problems));
        },
        py::arg("prefix"), py::arg("multimodal") = false, py::arg("max_problems") = 20,
        py::call_guard<py::gil_scoped_release>());
  m.def("check_index_bytes",
        [](py::bytes idx, uint64_t bin_size, bool multimodal) {
          std::string_view v = idx;
          return messages(check_index_image(reinterpret_cast<const uint8_t*>(v.data()), v.size(), bin_size, "<idx>",
                                            "<bin>", multimodal));
        },
        py::arg("idx"), py::arg("bin_size"), py::arg("multimodal") = false);
  m.def("best_dtype", [](uint64_t vocab_size) { return dtype_name(best_dtype(vocab_size)); }, py::arg("vocab_size"));
}
