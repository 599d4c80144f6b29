// The `kiln._kiln` Python extension (pybind11): build, load, save, run with NumPy arrays in and out.
// Errors raise kiln.KilnError with Kiln's message.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "kiln/engine.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

PyObject* g_kiln_error = nullptr;

[[noreturn]] void Raise(const kiln::Status& st) {
  PyErr_SetString(g_kiln_error, st.ToString().c_str());
  throw py::error_already_set();
}

const char* NumpyName(kiln::DataType t) {
  switch (t) {
    case kiln::DataType::kFloat32: return "float32";
    case kiln::DataType::kFloat64: return "float64";
    case kiln::DataType::kFloat16: return "float16";
    case kiln::DataType::kInt8: return "int8";
    case kiln::DataType::kUInt8: return "uint8";
    case kiln::DataType::kInt16: return "int16";
    case kiln::DataType::kUInt16: return "uint16";
    case kiln::DataType::kInt32: return "int32";
    case kiln::DataType::kUInt32: return "uint32";
    case kiln::DataType::kInt64: return "int64";
    case kiln::DataType::kUInt64: return "uint64";
    case kiln::DataType::kBool: return "bool";
    case kiln::DataType::kBFloat16: return nullptr;
  }
  return nullptr;
}

py::dict BindingDict(const kiln::BindingInfo& b) {
  py::list dims;
  for (size_t i = 0; i < b.dims.size(); ++i) {
    if (b.dims[i] >= 0) {
      dims.append(b.dims[i]);
    } else if (i < b.dim_names.size() && !b.dim_names[i].empty()) {
      dims.append(b.dim_names[i]);
    } else {
      dims.append(py::none());
    }
  }
  py::list profiles;
  for (const kiln::InputProfile& p : b.profiles) {
    profiles.append(py::dict("min"_a = p.min, "opt"_a = p.opt, "max"_a = p.max));
  }
  return py::dict("name"_a = b.name, "dtype"_a = kiln::DataTypeName(b.dtype), "shape"_a = dims,
                  "profiles"_a = profiles);
}

class KilnContext {
 public:
  KilnContext(std::shared_ptr<kiln::Engine> engine, std::unique_ptr<kiln::ExecutionContext> ctx)
      : engine_(std::move(engine)), ctx_(std::move(ctx)) {}

  void SetCpuThreads(int threads) {
    kiln::Status st = ctx_->SetCpuThreads(threads);
    if (!st.ok()) Raise(st);
  }

  py::dict Run(const py::dict& feeds) {
    py::module_ np = py::module_::import("numpy");
    for (const auto& [key, value] : feeds) {
      const std::string name = py::cast<std::string>(key);
      const kiln::BindingInfo* binding = nullptr;
      for (const auto& b : engine_->inputs()) {
        if (b.name == name) binding = &b;
      }
      if (!binding) Raise(kiln::NotFound("the engine has no input '" + name + "'"));
      const char* np_name = NumpyName(binding->dtype);
      if (!np_name) Raise(kiln::Unsupported("input '" + name + "' is bfloat16, which NumPy lacks"));
      // asarray keeps 0-d arrays 0-d (ascontiguousarray would make them 1-d).
      py::array arr = np.attr("asarray")(value, "dtype"_a = np_name, "order"_a = "C");
      std::vector<int64_t> dims(arr.shape(), arr.shape() + arr.ndim());
      kiln::Status st = ctx_->SetInput(name, arr.data(), binding->dtype, dims);
      if (!st.ok()) Raise(st);
    }
    kiln::Status st;
    {
      py::gil_scoped_release release;
      st = ctx_->Run();
    }
    if (!st.ok()) Raise(st);
    py::dict out;
    for (const auto& b : engine_->outputs()) {
      auto t = ctx_->GetOutput(b.name);
      if (!t.ok()) Raise(t.status());
      const char* np_name = NumpyName(t->dtype());
      if (!np_name) Raise(kiln::Unsupported("output '" + b.name + "' is bfloat16, which NumPy lacks"));
      std::vector<py::ssize_t> shape(t->dims().begin(), t->dims().end());
      py::array a(py::dtype(np_name), shape);
      if (t->nbytes() > 0) std::memcpy(a.mutable_data(), t->data(), t->nbytes());
      out[py::str(b.name)] = a;
    }
    return out;
  }

  void SetProfile(int index) {
    kiln::Status st = ctx_->SetOptimizationProfile(index);
    if (!st.ok()) Raise(st);
  }

 private:
  std::shared_ptr<kiln::Engine> engine_;
  std::unique_ptr<kiln::ExecutionContext> ctx_;
};

kiln::Precision ParsePrecision(const std::string& s) {
  if (s == "fp32") return kiln::Precision::kFp32;
  if (s == "fp16") return kiln::Precision::kFp16;
  if (s == "int8") return kiln::Precision::kInt8;
  if (s == "bf16") return kiln::Precision::kBf16;
  Raise(kiln::InvalidArgument("precision must be fp32, fp16, bf16 or int8, got '" + s + "'"));
}

std::shared_ptr<kiln::Engine> Build(const std::string& path, py::object shapes, const std::string& precision,
                                    const std::string& device, bool optimize, bool fast_kernels,
                                    bool channels_last, bool tf32, const std::string& timing_cache,
                                    bool packed_weights) {
  kiln::BuildOptions options;
  options.precision = ParsePrecision(precision);
  if (device == "cuda") {
    options.device = kiln::DeviceType::kCuda;
  } else if (device != "cpu") {
    Raise(kiln::InvalidArgument("device must be cpu or cuda, got '" + device + "'"));
  }
  options.optimize = optimize;
  options.fast_kernels = fast_kernels;
  options.channels_last = channels_last;
  options.packed_weights = packed_weights;
  options.tf32 = tf32;
  options.timing_cache = timing_cache;
  std::vector<std::string> specs;
  if (py::isinstance<py::str>(shapes)) {
    specs.push_back(py::cast<std::string>(shapes));
  } else if (!shapes.is_none()) {
    specs = py::cast<std::vector<std::string>>(shapes);
  }
  for (const std::string& s : specs) {
    auto p = kiln::ParseShapesOption(s);
    if (!p.ok()) Raise(p.status());
    options.profiles.push_back(std::move(*p));
  }
  kiln::Expected<std::shared_ptr<kiln::Engine>> e = kiln::Status(kiln::Internal("not built"));
  {
    py::gil_scoped_release release;
    e = kiln::Engine::BuildFromOnnx(path, options);
  }
  if (!e.ok()) Raise(e.status());
  return *e;
}

std::shared_ptr<kiln::Engine> Load(const std::string& path) {
  auto e = kiln::Engine::Load(path);
  if (!e.ok()) Raise(e.status());
  return *e;
}

}  // namespace

PYBIND11_MODULE(_kiln, m) {
  m.doc() = "Kiln inference engine";
  static py::exception<std::exception> kiln_error(m, "KilnError", PyExc_RuntimeError);
  g_kiln_error = kiln_error.ptr();

  py::class_<KilnContext>(m, "Context")
      .def("run", &KilnContext::Run, "feeds"_a, "Runs on {input name: array}; returns {output name: array}.")
      .def("set_profile", &KilnContext::SetProfile, "index"_a)
      .def("set_cpu_threads", &KilnContext::SetCpuThreads, "threads"_a,
           "CPU plans: the threads this context's runs take from the process budget (0: all of it).");

  py::class_<kiln::Engine, std::shared_ptr<kiln::Engine>>(m, "Engine")
      .def(
          "save",
          [](const kiln::Engine& e, const std::string& path) {
            kiln::Status st = e.Save(path);
            if (!st.ok()) Raise(st);
          },
          "path"_a)
      .def("create_context",
           [](std::shared_ptr<kiln::Engine> e) {
             auto ctx = e->CreateContext();
             if (!ctx) Raise(kiln::OutOfRange("out of memory creating a context"));
             return std::make_unique<KilnContext>(e, std::move(ctx));
           })
      .def("serialize",
           [](const kiln::Engine& e) {
             auto bytes = e.Serialize();
             if (!bytes.ok()) Raise(bytes.status());
             return py::bytes(*bytes);
           })
      .def_property_readonly("inputs",
                             [](const kiln::Engine& e) {
                               py::list l;
                               for (const auto& b : e.inputs()) l.append(BindingDict(b));
                               return l;
                             })
      .def_property_readonly("outputs",
                             [](const kiln::Engine& e) {
                               py::list l;
                               for (const auto& b : e.outputs()) l.append(BindingDict(b));
                               return l;
                             })
      .def_property_readonly("layers",
                             [](const kiln::Engine& e) {
                               py::list l;
                               for (const auto& x : e.layers()) {
                                 l.append(py::dict("name"_a = x.name, "op"_a = x.op, "tactic"_a = x.tactic,
                                                   "precision"_a = x.precision));
                               }
                               return l;
                             })
      .def(
          "memory",
          [](const kiln::Engine& e, int profile) {
            const kiln::MemoryInfo mi = e.memory(profile);
            return py::dict("arena_bytes"_a = mi.arena_bytes, "naive_bytes"_a = mi.naive_bytes,
                            "weight_bytes"_a = mi.weight_bytes,
                            "packed_weight_bytes"_a = mi.packed_weight_bytes, "planned_tensors"_a = mi.planned_tensors,
                            "dynamic_tensors"_a = mi.dynamic_tensors, "in_place_tensors"_a = mi.in_place_tensors,
                            "view_tensors"_a = mi.view_tensors, "concats_eliminated"_a = mi.concats_eliminated);
          },
          "profile"_a = 0)
      .def_property_readonly("target", &kiln::Engine::target_description)
      .def_property_readonly("num_profiles", &kiln::Engine::num_profiles);

  m.def(
      "build", &Build, "onnx_path"_a, "shapes"_a = py::none(), "precision"_a = "fp32", "device"_a = "cpu",
      "optimize"_a = true, "fast_kernels"_a = true, "channels_last"_a = true, "tf32"_a = false, "timing_cache"_a = "",
      "packed_weights"_a = true,
      "Builds an engine from an ONNX model. shapes: a shapes option string (NAME:MIN..OPT..MAX) or a list of "
      "them, one per optimization profile. fast_kernels=False runs every layer with its reference kernel. "
      "CPU: channels_last=False keeps activations NCHW (every convolution reorders for itself); "
      "packed_weights=False leaves the kernels' packed weights out of the plan (smaller; packed at first run). "
      "GPU: tf32=True lets FP32 convolutions and GEMMs use TF32 tensor cores; timing_cache: a file of tactic "
      "timings loaded before the build and saved after (KILN_CUDA_TF32 / KILN_CUDA_TIMING_CACHE override both).");
  m.def("set_cpu_thread_budget", &kiln::SetCpuThreadBudget, "threads"_a,
        "CPU plans: the threads Kiln's kernels use in all, shared by every context (0: the default, "
        "OMP_NUM_THREADS or the machine's hardware threads).");
  m.def("cpu_thread_budget", &kiln::CpuThreadBudget);
  m.def("load", &Load, "plan_path"_a, "Loads a plan saved by Engine.save().");
  m.def(
      "load_bytes",
      [](py::bytes data) {
        std::string s = data;
        auto e = kiln::Engine::LoadFromMemory(s.data(), s.size());
        if (!e.ok()) Raise(e.status());
        return *e;
      },
      "data"_a);
}
