// tvmq_runner: run a tvmq package's model.so with the TVM runtime, without Python.
//
//   tvmq_runner MODEL.so OUTPUT_DIR INPUT.npy... [--repeat N]
//
// Inputs are .npy files given in the order of the package's inputs (metadata.json); outputs are
// written as OUTPUT_DIR/output_0.npy, output_1.npy, ... in the order of its outputs. With
// --repeat N the model runs N more times and the median time of one inference is printed.
// Build recipe: build.sh beside this file.

#include <dlpack/dlpack.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using tvm::ffi::Tensor;

// Host memory for tensors, aligned as TVM's kernels expect.
struct HostAlloc {
  static constexpr size_t kAlignment = 64;
  void AllocData(DLTensor* tensor) {
    size_t nbytes = (tvm::ffi::GetDataSize(*tensor) + kAlignment - 1) / kAlignment * kAlignment;
    tensor->data = std::aligned_alloc(kAlignment, std::max(nbytes, kAlignment));
    if (tensor->data == nullptr) throw std::bad_alloc();
  }
  void FreeData(DLTensor* tensor) { std::free(tensor->data); }
};

constexpr int kPooledAllocator = 2;  // tvm.runtime.vm.VirtualMachine.POOLED_ALLOCATOR

struct NpyType {
  const char* descr;  // numpy's dtype.str (little-endian or byte-sized)
  DLDataType dtype;
};

const NpyType kNpyTypes[] = {
    {"<f4", {kDLFloat, 32, 1}}, {"<f2", {kDLFloat, 16, 1}}, {"<f8", {kDLFloat, 64, 1}},
    {"|i1", {kDLInt, 8, 1}},    {"|u1", {kDLUInt, 8, 1}},   {"<i2", {kDLInt, 16, 1}},
    {"<u2", {kDLUInt, 16, 1}},  {"<i4", {kDLInt, 32, 1}},   {"<u4", {kDLUInt, 32, 1}},
    {"<i8", {kDLInt, 64, 1}},   {"<u8", {kDLUInt, 64, 1}},  {"|b1", {kDLBool, 8, 1}},
};

DLDataType DtypeOf(const std::string& descr, const std::string& file) {
  for (const auto& t : kNpyTypes) {
    if (descr == t.descr) return t.dtype;
  }
  throw std::runtime_error(file + ": unsupported dtype '" + descr + "' (little-endian numbers only)");
}

const char* DescrOf(DLDataType dtype) {
  for (const auto& t : kNpyTypes) {
    if (t.dtype.code == dtype.code && t.dtype.bits == dtype.bits && dtype.lanes == 1) return t.descr;
  }
  throw std::runtime_error("output has a dtype .npy cannot hold");
}

// The value of `key` in the .npy header dict, e.g. "'<f4'" or "(1, 3, 16, 16)".
std::string HeaderField(const std::string& header, const std::string& key, const std::string& file) {
  size_t at = header.find("'" + key + "':");
  if (at == std::string::npos) throw std::runtime_error(file + ": .npy header has no '" + key + "'");
  at = header.find_first_not_of(' ', at + key.size() + 3);
  size_t end = header[at] == '(' ? header.find(')', at) + 1 : header.find_first_of(",}", at);
  return header.substr(at, end - at);
}

std::vector<int64_t> ParseShape(const std::string& tuple) {
  std::vector<int64_t> shape;
  std::string digits;
  for (char c : tuple) {
    if (c >= '0' && c <= '9') {
      digits += c;
    } else if (!digits.empty()) {
      shape.push_back(std::stoll(digits));
      digits.clear();
    }
  }
  return shape;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream data;
  data << in.rdbuf();
  return data.str();
}

Tensor ReadNpy(const std::string& path) {
  const std::string data = ReadFile(path);
  if (data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) {
    throw std::runtime_error(path + ": not a .npy file");
  }
  const int major = static_cast<unsigned char>(data[6]);
  const size_t len_bytes = major == 1 ? 2 : 4;
  size_t header_len = 0;
  for (size_t i = 0; i < len_bytes; ++i) header_len |= size_t(static_cast<unsigned char>(data[8 + i])) << (8 * i);
  const size_t offset = 8 + len_bytes + header_len;
  if (data.size() < offset) throw std::runtime_error(path + ": truncated .npy header");
  const std::string header = data.substr(8 + len_bytes, header_len);
  std::string descr = HeaderField(header, "descr", path);
  descr = descr.substr(1, descr.size() - 2);  // strip the quotes
  if (HeaderField(header, "fortran_order", path) != "False") {
    throw std::runtime_error(path + ": Fortran-ordered arrays are not supported (save a C-contiguous array)");
  }
  const DLDataType dtype = DtypeOf(descr, path);
  const std::vector<int64_t> shape = ParseShape(HeaderField(header, "shape", path));
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  const size_t nbytes = size_t(count) * dtype.bits / 8;
  if (data.size() - offset != nbytes) {
    throw std::runtime_error(path + ": holds " + std::to_string(data.size() - offset) + " data bytes, its header says " +
                             std::to_string(nbytes));
  }
  Tensor tensor = Tensor::FromNDAlloc(HostAlloc(), tvm::ffi::Shape(shape), dtype, DLDevice{kDLCPU, 0});
  std::memcpy(tensor.data_ptr(), data.data() + offset, nbytes);
  return tensor;
}

void WriteNpy(const Tensor& tensor, const std::string& path) {
  const DLTensor* dl = tensor.GetDLTensorPtr();
  std::string header = "{'descr': '" + std::string(DescrOf(dl->dtype)) + "', 'fortran_order': False, 'shape': (";
  for (int i = 0; i < dl->ndim; ++i) {
    header += std::to_string(dl->shape[i]) + (dl->ndim == 1 ? "," : i + 1 < dl->ndim ? ", " : "");
  }
  header += "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');  // data starts on a 64-byte boundary
  header += '\n';
  const size_t nbytes = tvm::ffi::GetDataSize(*dl);
  if (dl->device.device_type != kDLCPU || !tensor.IsContiguous()) {
    throw std::runtime_error("output is not a contiguous host tensor");
  }
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary);
    const uint16_t len = static_cast<uint16_t>(header.size());
    out.write("\x93NUMPY\x01\x00", 8);
    out.put(static_cast<char>(len & 0xff)).put(static_cast<char>(len >> 8));
    out << header;
    out.write(static_cast<const char*>(tensor.data_ptr()), std::streamsize(nbytes));
    if (!out) throw std::runtime_error("cannot write " + path);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot write " + path);
}

// The VM's result (a tensor or nested tuple of tensors) as a flat list.
void Flatten(const tvm::ffi::Any& result, std::vector<Tensor>* out) {
  if (auto tensor = result.try_cast<Tensor>()) {
    out->push_back(*tensor);
  } else if (auto items = result.try_cast<tvm::ffi::Array<tvm::ffi::Any>>()) {
    for (const auto& item : *items) Flatten(item, out);
  } else {
    throw std::runtime_error("the model returned a " + result.GetTypeKey() + ", expected tensors");
  }
}

int Usage() {
  std::cerr << "usage: tvmq_runner MODEL.so OUTPUT_DIR INPUT.npy... [--repeat N]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  int repeat = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--repeat" && i + 1 < argc) {
      repeat = std::atoi(argv[++i]);
    } else {
      positional.push_back(argv[i]);
    }
  }
  if (positional.size() < 2 || repeat < 0) return Usage();
  try {
    std::string path = positional[0];
    if (path.find('/') == std::string::npos) path = "./" + path;  // dlopen looks up bare names elsewhere
    tvm::ffi::Module library = tvm::ffi::Module::LoadFromFile(path);
    tvm::ffi::Module vm = library->GetFunction("vm_load_executable").value()().cast<tvm::ffi::Module>();
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
    tvm::ffi::Function main_fn = vm->GetFunction("main").value();

    std::vector<Tensor> inputs;
    for (size_t i = 2; i < positional.size(); ++i) inputs.push_back(ReadNpy(positional[i]));
    std::vector<tvm::ffi::AnyView> args(inputs.begin(), inputs.end());
    auto run = [&]() {
      tvm::ffi::Any result;
      main_fn.CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
      return result;
    };

    std::vector<Tensor> outputs;
    Flatten(run(), &outputs);
    for (size_t i = 0; i < outputs.size(); ++i) {
      WriteNpy(outputs[i], positional[1] + "/output_" + std::to_string(i) + ".npy");
    }
    std::cout << "wrote " << outputs.size() << " output(s) to " << positional[1] << "\n";
    if (repeat > 0) {
      std::vector<double> ms;
      for (int i = 0; i < repeat; ++i) {
        auto start = std::chrono::steady_clock::now();
        run();
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      }
      std::sort(ms.begin(), ms.end());
      std::cout << "median " << ms[ms.size() / 2] << " ms over " << repeat << " runs\n";
    }
  } catch (const std::exception& err) {
    std::cerr << "tvmq_runner: error: " << err.what() << "\n";
    return 1;
  }
  return 0;
}
