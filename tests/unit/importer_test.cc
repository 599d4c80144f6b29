// The ONNX importer on ModelProtos built here with the protobuf API.
#include "onnx/importer.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <variant>

namespace kiln {
namespace {

namespace fs = std::filesystem;
using DimSpec = std::variant<int64_t, std::string>;

onnx::ModelProto NewModel(int64_t opset = 13) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("kiln-test");
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(opset);
  m.mutable_graph()->set_name("g");
  return m;
}

void SetType(onnx::ValueInfoProto* vi, int32_t elem, const std::vector<DimSpec>& dims) {
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem);
  auto* shape = tt->mutable_shape();
  for (const auto& d : dims) {
    auto* dim = shape->add_dim();
    if (std::holds_alternative<int64_t>(d)) {
      const int64_t v = std::get<int64_t>(d);
      if (v >= 0) dim->set_dim_value(v);  // -1: neither value nor param
    } else {
      dim->set_dim_param(std::get<std::string>(d));
    }
  }
}

void AddInput(onnx::ModelProto* m, const std::string& name, int32_t elem, const std::vector<DimSpec>& dims) {
  auto* vi = m->mutable_graph()->add_input();
  vi->set_name(name);
  SetType(vi, elem, dims);
}

void AddOutput(onnx::ModelProto* m, const std::string& name, int32_t elem = onnx::TensorProto::FLOAT) {
  auto* vi = m->mutable_graph()->add_output();
  vi->set_name(name);
  vi->mutable_type()->mutable_tensor_type()->set_elem_type(elem);
}

onnx::NodeProto* AddNode(onnx::ModelProto* m, const std::string& op, const std::vector<std::string>& inputs,
                         const std::vector<std::string>& outputs, const std::string& name = "") {
  auto* n = m->mutable_graph()->add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (const auto& i : inputs) n->add_input(i);
  for (const auto& o : outputs) n->add_output(o);
  return n;
}

onnx::TensorProto FloatTensor(const std::string& name, const std::vector<int64_t>& dims,
                              const std::vector<float>& values, bool raw) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t.add_dims(d);
  if (raw) {
    t.set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  } else {
    for (float v : values) t.add_float_data(v);
  }
  return t;
}

std::string Serialize(const onnx::ModelProto& m) {
  std::string s;
  EXPECT_TRUE(m.SerializeToString(&s));
  return s;
}

Expected<Model> Import(const onnx::ModelProto& m, bool validate = true) {
  ImportOptions o;
  o.validate = validate;
  return ImportOnnxBytes(Serialize(m), "test.onnx", o);
}

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("kiln_importer_" + std::to_string(getpid()) + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string Write(const std::string& name, const std::string& bytes) const {
    const fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p.string();
  }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

// Y = X @ W + B with a symbolic batch.
onnx::ModelProto MatMulAddModel() {
  onnx::ModelProto m = NewModel(13);
  AddInput(&m, "X", onnx::TensorProto::FLOAT, {"N", int64_t{3}});
  *m.mutable_graph()->add_initializer() = FloatTensor("W", {3, 2}, {1, 2, 3, 4, 5, 6}, /*raw=*/false);
  *m.mutable_graph()->add_initializer() = FloatTensor("B", {2}, {0.5f, -0.5f}, /*raw=*/true);
  AddNode(&m, "MatMul", {"X", "W"}, {"XW"}, "mm");
  AddNode(&m, "Add", {"XW", "B"}, {"Y"}, "add");
  AddOutput(&m, "Y");
  return m;
}

TEST(ImporterTest, ImportsSmallModelWithTypesAndSymbolicBatch) {
  auto r = Import(MatMulAddModel());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Model& model = r.value();
  EXPECT_EQ(model.opset, 13);
  EXPECT_EQ(model.ir_version, 8);
  EXPECT_EQ(model.producer, "kiln-test");
  EXPECT_EQ(model.source, "test.onnx");
  const Graph& g = model.graph;
  ASSERT_EQ(g.inputs().size(), 1u);
  const Value* x = g.inputs()[0];
  EXPECT_EQ(x->name(), "X");
  EXPECT_EQ(x->dtype(), DType::kFloat32);
  ASSERT_TRUE(x->shape().has_value());
  ASSERT_EQ(x->shape()->rank(), 2u);
  EXPECT_TRUE((*x->shape())[0].is_symbolic());
  EXPECT_EQ((*x->shape())[0].symbol(), "N");
  EXPECT_EQ((*x->shape())[1].value(), 3);

  const Value* w = g.FindValue("W");
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->is_constant());
  EXPECT_EQ(w->constant()->sizes(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(w->constant()->data<float>()[5], 6.f);
  const Value* b = g.FindValue("B");
  ASSERT_TRUE(b && b->is_constant());
  EXPECT_EQ(b->constant()->data<float>()[1], -0.5f);

  ASSERT_EQ(g.num_nodes(), 2u);
  for (const Node* n : g.nodes()) EXPECT_EQ(n->opset(), 13);
  ASSERT_EQ(g.outputs().size(), 1u);
  const Value* y = g.outputs()[0];
  EXPECT_EQ(y->dtype(), DType::kFloat32);
  ASSERT_TRUE(y->shape().has_value());
  EXPECT_EQ(y->shape()->ToString(), "[N,2]");
}

TEST(ImporterTest, UnknownDimsAndUnknownRank) {
  onnx::ModelProto m = NewModel(13);
  AddInput(&m, "X", onnx::TensorProto::FLOAT, {int64_t{-1}, int64_t{4}});
  auto* r = m.mutable_graph()->add_input();
  r->set_name("R");
  r->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::INT64);
  AddNode(&m, "Relu", {"X"}, {"Y"});
  AddNode(&m, "Identity", {"R"}, {"Z"});
  AddOutput(&m, "Y");
  AddOutput(&m, "Z", onnx::TensorProto::INT64);
  auto res = Import(m, /*validate=*/false);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  const Value* x = res->graph.FindValue("X");
  EXPECT_TRUE((*x->shape())[0].is_unknown());
  EXPECT_EQ(res->graph.FindValue("R")->dtype(), DType::kInt64);
  EXPECT_FALSE(res->graph.FindValue("R")->shape().has_value());
  // Without validation, node outputs take their declared types.
  EXPECT_EQ(res->graph.FindValue("Z")->dtype(), DType::kInt64);
}

TEST(ImporterTest, InitializerListedAsInputIsAConstant) {
  onnx::ModelProto m = MatMulAddModel();
  AddInput(&m, "W", onnx::TensorProto::FLOAT, {int64_t{3}, int64_t{2}});
  auto r = Import(m);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->graph.inputs().size(), 1u);
  EXPECT_EQ(r->graph.inputs()[0]->name(), "X");
  EXPECT_TRUE(r->graph.FindValue("W")->is_constant());
}

std::string SerializeTensor(const onnx::TensorProto& t) {
  std::string s;
  EXPECT_TRUE(t.SerializeToString(&s));
  return s;
}

TEST(ImporterTest, TypedFieldEncodings) {
  onnx::TensorProto t;
  t.set_name("i8");
  t.set_data_type(onnx::TensorProto::INT8);
  t.add_dims(3);
  for (int v : {-128, 0, 127}) t.add_int32_data(v);
  auto i8 = ParseOnnxTensor(SerializeTensor(t), "i8.pb");
  ASSERT_TRUE(i8.ok()) << i8.status().ToString();
  EXPECT_EQ(i8->dtype(), DType::kInt8);
  EXPECT_EQ(i8->data<int8_t>()[0], -128);
  EXPECT_EQ(i8->data<int8_t>()[2], 127);

  t.Clear();
  t.set_data_type(onnx::TensorProto::UINT16);
  t.add_dims(2);
  t.add_int32_data(65535);
  t.add_int32_data(7);
  auto u16 = ParseOnnxTensor(SerializeTensor(t), "u16.pb");
  ASSERT_TRUE(u16.ok());
  EXPECT_EQ(u16->data<uint16_t>()[0], 65535);

  t.Clear();
  t.set_data_type(onnx::TensorProto::BOOL);
  t.add_dims(3);
  for (int v : {1, 0, 1}) t.add_int32_data(v);
  auto b = ParseOnnxTensor(SerializeTensor(t), "b.pb");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->data<bool>()[0], true);
  EXPECT_EQ(b->data<bool>()[1], false);

  t.Clear();
  t.set_data_type(onnx::TensorProto::FLOAT16);
  t.add_dims(2);
  t.add_int32_data(0x3C00);  // 1.0
  t.add_int32_data(0xC000);  // -2.0
  auto h = ParseOnnxTensor(SerializeTensor(t), "h.pb");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(static_cast<float>(h->data<Float16>()[0]), 1.f);
  EXPECT_EQ(static_cast<float>(h->data<Float16>()[1]), -2.f);

  t.Clear();
  t.set_data_type(onnx::TensorProto::BFLOAT16);
  t.add_dims(1);
  t.add_int32_data(0x4040);  // 3.0
  auto bf = ParseOnnxTensor(SerializeTensor(t), "bf.pb");
  ASSERT_TRUE(bf.ok());
  EXPECT_EQ(static_cast<float>(bf->data<BFloat16>()[0]), 3.f);

  t.Clear();
  t.set_data_type(onnx::TensorProto::INT64);
  t.add_dims(2);
  t.add_int64_data(-(int64_t{1} << 40));
  t.add_int64_data(5);
  auto i64 = ParseOnnxTensor(SerializeTensor(t), "i64.pb");
  ASSERT_TRUE(i64.ok());
  EXPECT_EQ(i64->data<int64_t>()[0], -(int64_t{1} << 40));

  t.Clear();
  t.set_data_type(onnx::TensorProto::DOUBLE);
  t.add_double_data(2.25);  // no dims: a scalar
  auto d = ParseOnnxTensor(SerializeTensor(t), "d.pb");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->rank(), 0u);
  EXPECT_EQ(d->data<double>()[0], 2.25);

  t.Clear();
  t.set_data_type(onnx::TensorProto::UINT32);
  t.add_dims(1);
  t.add_uint64_data(4000000000u);
  auto u32 = ParseOnnxTensor(SerializeTensor(t), "u32.pb");
  ASSERT_TRUE(u32.ok());
  EXPECT_EQ(u32->data<uint32_t>()[0], 4000000000u);

  t.Clear();
  t.set_data_type(onnx::TensorProto::UINT64);
  t.add_dims(1);
  t.add_uint64_data(uint64_t{1} << 63);
  auto u64 = ParseOnnxTensor(SerializeTensor(t), "u64.pb");
  ASSERT_TRUE(u64.ok());
  EXPECT_EQ(u64->data<uint64_t>()[0], uint64_t{1} << 63);
}

TEST(ImporterTest, RawDataIsLittleEndianAndBoolsAreNormalized) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::INT32);
  t.add_dims(2);
  t.set_raw_data(std::string("\x01\x02\x00\x00\xff\xff\xff\xff", 8));
  auto r = ParseOnnxTensor(SerializeTensor(t), "i32.pb");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data<int32_t>()[0], 0x0201);
  EXPECT_EQ(r->data<int32_t>()[1], -1);

  t.Clear();
  t.set_data_type(onnx::TensorProto::BOOL);
  t.add_dims(3);
  t.set_raw_data(std::string("\x00\x02\x01", 3));
  auto b = ParseOnnxTensor(SerializeTensor(t), "b.pb");
  ASSERT_TRUE(b.ok());
  uint8_t bytes[3];
  std::memcpy(bytes, b->raw_data(), 3);
  EXPECT_EQ(bytes[0], 0);
  EXPECT_EQ(bytes[1], 1);
  EXPECT_EQ(bytes[2], 1);
}

TEST(ImporterTest, WrongDataSizeIsAnError) {
  onnx::ModelProto m = MatMulAddModel();
  // W is [3,2] f32: 24 bytes; give 20.
  auto* w = m.mutable_graph()->mutable_initializer(0);
  w->clear_float_data();
  w->set_raw_data(std::string(20, '\0'));
  auto r = Import(m);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("model test.onnx: "), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("'W'"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("20 bytes"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("24"), std::string::npos) << r.status().message();

  // Too few typed values.
  m = MatMulAddModel();
  m.mutable_graph()->mutable_initializer(0)->mutable_float_data()->RemoveLast();
  r = Import(m);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("float_data has 5 values"), std::string::npos) << r.status().message();
}

TEST(ImporterTest, HugeDimsWithSmallDataFailWithoutAllocating) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.add_dims(int64_t{1} << 30);
  t.add_dims(int64_t{1} << 10);
  t.set_raw_data("abcd");
  auto r = ParseOnnxTensor(SerializeTensor(t), "big.pb");
  ASSERT_FALSE(r.ok());
  t.add_dims(int64_t{1} << 40);  // the element count overflows int64
  r = ParseOnnxTensor(SerializeTensor(t), "big.pb");
  ASSERT_FALSE(r.ok());
  t.clear_dims();
  t.add_dims(-2);
  r = ParseOnnxTensor(SerializeTensor(t), "neg.pb");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("invalid dims"), std::string::npos) << r.status().message();
}

void SetExternal(onnx::TensorProto* t, const std::string& location, int64_t offset, int64_t length) {
  t->clear_raw_data();
  t->clear_float_data();
  t->set_data_location(onnx::TensorProto::EXTERNAL);
  auto add = [&](const std::string& k, const std::string& v) {
    auto* e = t->add_external_data();
    e->set_key(k);
    e->set_value(v);
  };
  add("location", location);
  if (offset >= 0) add("offset", std::to_string(offset));
  if (length >= 0) add("length", std::to_string(length));
}

TEST(ImporterTest, ExternalData) {
  TempDir dir;
  // weights.bin: 5 junk bytes, W (3x2 f32) at offset 5, padding to 64, then a 2048-float tensor (mapped).
  std::vector<float> w = {1, 2, 3, 4, 5, 6};
  std::vector<float> big(2048);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i) * 0.5f;
  std::string blob(5, 'x');
  blob.append(reinterpret_cast<const char*>(w.data()), 24);
  blob.resize(64, '\0');
  blob.append(reinterpret_cast<const char*>(big.data()), big.size() * 4);
  dir.Write("data/weights.bin", blob);

  onnx::ModelProto m = MatMulAddModel();
  SetExternal(m.mutable_graph()->mutable_initializer(0), "data/weights.bin", 5, 24);
  onnx::TensorProto* bt = m.mutable_graph()->add_initializer();
  *bt = FloatTensor("Big", {2048}, {}, false);
  SetExternal(bt, "data/weights.bin", 64, -1);
  AddOutput(&m, "Big");
  const std::string path = dir.Write("model.onnx", Serialize(m));

  auto r = ImportOnnxFile(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Tensor* wt = r->graph.FindValue("W")->constant();
  ASSERT_NE(wt, nullptr);
  EXPECT_EQ(wt->data<float>()[0], 1.f);
  EXPECT_EQ(wt->data<float>()[5], 6.f);
  const Tensor* bigt = r->graph.FindValue("Big")->constant();
  ASSERT_NE(bigt, nullptr);
  EXPECT_EQ(bigt->numel(), 2048);
  EXPECT_EQ(bigt->data<float>()[0], 0.f);
  EXPECT_EQ(bigt->data<float>()[2047], 1023.5f);

  // ImportOptions::external_data_dir overrides the model's directory.
  const std::string elsewhere = dir.Write("sub/model.onnx", Serialize(m));
  ImportOptions opts;
  opts.external_data_dir = dir.path();
  auto r2 = ImportOnnxFile(elsewhere, opts);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_FALSE(ImportOnnxFile(elsewhere).ok());  // sub/data/weights.bin does not exist

  // From bytes, external data needs a directory.
  auto r3 = ImportOnnxBytes(Serialize(m), "mem");
  ASSERT_FALSE(r3.ok());
  EXPECT_NE(r3.status().message().find("no directory"), std::string::npos) << r3.status().message();
  auto r4 = ImportOnnxBytes(Serialize(m), "mem", opts);
  EXPECT_TRUE(r4.ok()) << r4.status().ToString();
}

TEST(ImporterTest, ExternalDataErrors) {
  TempDir dir;
  dir.Write("w.bin", std::string(30, '\0'));
  struct Case {
    std::string location;
    int64_t offset, length;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"w.bin", 10, 24, "too short"},
      {"w.bin", 100, -1, "too short"},
      {"w.bin", 0, 12, "length 12"},
      {"missing.bin", 0, 24, "missing.bin"},
      {"../outside.bin", 0, 24, "leaves the model's directory"},
      {"a/../../outside.bin", 0, 24, "leaves the model's directory"},
      {"/etc/passwd", 0, 24, "relative"},
      {"", 0, 24, "no location"},
  };
  for (const Case& c : cases) {
    onnx::ModelProto m = MatMulAddModel();
    SetExternal(m.mutable_graph()->mutable_initializer(0), c.location, c.offset, c.length);
    const std::string path = dir.Write("model.onnx", Serialize(m));
    auto r = ImportOnnxFile(path);
    ASSERT_FALSE(r.ok()) << c.location;
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("'W'"), std::string::npos) << r.status().message();
  }
  onnx::ModelProto m = MatMulAddModel();
  SetExternal(m.mutable_graph()->mutable_initializer(0), "w.bin", 0, 24);
  m.mutable_graph()->mutable_initializer(0)->mutable_external_data(1)->set_value("-4");
  auto r = ImportOnnxFile(dir.Write("model.onnx", Serialize(m)));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a non-negative integer"), std::string::npos)
      << r.status().message();
}

TEST(ImporterTest, AllUnsupportedOpsListedInOneError) {
  onnx::ModelProto m = NewModel(13);
  AddInput(&m, "X", onnx::TensorProto::FLOAT, {int64_t{2}});
  AddNode(&m, "FooOp", {"X"}, {"a"}, "foo1");
  AddNode(&m, "FooOp", {"a"}, {"b"}, "foo2");
  AddNode(&m, "Relu", {"b"}, {"c"}, "relu");
  auto* ms = AddNode(&m, "FusedGelu", {"c"}, {"d"}, "gelu");
  ms->set_domain("com.microsoft");
  auto* loop = AddNode(&m, "Loop", {"", ""}, {"e"}, "loop");
  auto* body = loop->add_attribute();
  body->set_name("body");
  body->set_type(onnx::AttributeProto::GRAPH);
  body->mutable_g()->set_name("body");
  AddNode(&m, "FooOp", {"d"}, {"f"}, "foo3");
  AddNode(&m, "FooOp", {"f"}, {"Y"}, "foo4");
  AddOutput(&m, "Y");
  auto r = Import(m);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  const std::string& msg = r.status().message();
  EXPECT_EQ(msg.rfind("model test.onnx: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("FooOp (4 nodes: foo1, foo2, foo3, ...)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("com.microsoft.FusedGelu (1 node: gelu)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Loop (1 node: loop)"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("Relu"), std::string::npos) << msg;
}

TEST(ImporterTest, OtherUnsupportedConstructs) {
  {
    onnx::ModelProto m = MatMulAddModel();
    auto* f = m.add_functions();
    f->set_name("MyFunc");
    f->set_domain("custom");
    auto r = Import(m);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(r.status().message().find("custom.MyFunc"), std::string::npos) << r.status().message();
  }
  {
    onnx::ModelProto m = MatMulAddModel();
    auto* s = m.mutable_graph()->add_sparse_initializer();
    s->mutable_values()->set_name("S");
    auto r = Import(m);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("sparse initializer"), std::string::npos) << r.status().message();
  }
  {
    onnx::ModelProto m = MatMulAddModel();
    auto* s = m.mutable_graph()->add_initializer();
    s->set_name("names");
    s->set_data_type(onnx::TensorProto::STRING);
    s->add_string_data("hello");
    s->add_dims(1);
    auto r = Import(m);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(r.status().message().find("element type STRING (1 initializer: 'names')"), std::string::npos)
        << r.status().message();
  }
  {
    onnx::ModelProto m = MatMulAddModel();
    auto* in = m.mutable_graph()->add_input();
    in->set_name("seq");
    in->mutable_type()->mutable_sequence_type()->mutable_elem_type()->mutable_tensor_type()->set_elem_type(1);
    auto r = Import(m);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(r.status().message().find("sequence-typed value (1 graph input: 'seq')"), std::string::npos)
        << r.status().message();
  }
  {
    onnx::ModelProto m = MatMulAddModel();
    auto* a = m.mutable_graph()->mutable_node(0)->add_attribute();
    a->set_name("x");
    a->set_ref_attr_name("outer");
    a->set_type(onnx::AttributeProto::INT);
    auto r = Import(m);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("ref_attr_name"), std::string::npos) << r.status().message();
  }
}

TEST(ImporterTest, OpsetOutOfRange) {
  for (int64_t opset : {int64_t{6}, int64_t{22}, (int64_t{1} << 32) + 13}) {
    onnx::ModelProto m = MatMulAddModel();
    m.mutable_opset_import(0)->set_version(opset);
    auto r = Import(m);
    ASSERT_FALSE(r.ok()) << opset;
    EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(r.status().message().find("opsets 7 to 21"), std::string::npos) << r.status().message();
  }
  onnx::ModelProto m = MatMulAddModel();
  m.mutable_opset_import(0)->set_domain("ai.onnx");
  m.mutable_opset_import(0)->set_version(7);
  auto* ml = m.add_opset_import();
  ml->set_domain("ai.onnx.ml");
  ml->set_version(3);
  auto r = Import(m);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->opset, 7);
  m.clear_opset_import();
  r = Import(m);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no default-domain"), std::string::npos) << r.status().message();
  // Without default-domain nodes, the ops of other domains are what is reported.
  onnx::ModelProto t = NewModel(13);
  t.mutable_opset_import(0)->set_domain("ai.onnx.preview.training");
  t.mutable_opset_import(0)->set_version(1);
  AddInput(&t, "X", onnx::TensorProto::FLOAT, {int64_t{2}});
  AddNode(&t, "Adam", {"X"}, {"Y"}, "adam")->set_domain("ai.onnx.preview.training");
  AddOutput(&t, "Y");
  r = Import(t);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("ai.onnx.preview.training.Adam (1 node: adam)"), std::string::npos)
      << r.status().message();
}

TEST(ImporterTest, TruncatedEmptyAndRandomBytes) {
  const std::string good = Serialize(MatMulAddModel());
  for (size_t cut : {good.size() / 2, good.size() - 1, size_t{1}}) {
    auto r = ImportOnnxBytes(good.substr(0, cut), "cut.onnx");
    ASSERT_FALSE(r.ok()) << cut;
    EXPECT_EQ(r.status().message().rfind("model cut.onnx: ", 0), 0u) << r.status().message();
  }
  auto empty = ImportOnnxBytes("", "empty.onnx");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("empty"), std::string::npos);

  std::mt19937 rng(1234);
  for (int i = 0; i < 300; ++i) {
    std::string bytes(rng() % 300 + 1, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    auto r = ImportOnnxBytes(bytes, "random.onnx");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message().rfind("model random.onnx: ", 0), 0u) << r.status().message();
    (void)ParseOnnxTensor(bytes, "random.pb");
  }
  // Flipping bytes of a valid model never crashes; most flips give an error.
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0xA5);
    (void)ImportOnnxBytes(bad, "flip.onnx");
  }
}

TEST(ImporterTest, FilesAndSizeLimit) {
  TempDir dir;
  auto missing = ImportOnnxFile(dir.path() + "/nope.onnx");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.onnx"), std::string::npos);

  const std::string bytes = Serialize(MatMulAddModel());
  const std::string path = dir.Write("m.onnx", bytes);
  auto ok = ImportOnnxFile(path);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->source, path);

  ImportOptions small;
  small.max_model_bytes = bytes.size() - 1;
  for (const auto& r : {ImportOnnxFile(path, small), ImportOnnxBytes(bytes, "m.onnx", small)}) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(r.status().message().find("2 GiB"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("external data"), std::string::npos) << r.status().message();
  }
  auto d = ImportOnnxFile(dir.path());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("directory"), std::string::npos);
}

TEST(ImporterTest, CycleIsReported) {
  onnx::ModelProto m = NewModel(13);
  AddInput(&m, "X", onnx::TensorProto::FLOAT, {int64_t{2}});
  AddNode(&m, "Add", {"X", "B"}, {"A"}, "first");
  AddNode(&m, "Relu", {"A"}, {"B"}, "second");
  AddOutput(&m, "B");
  auto r = Import(m);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cycle"), std::string::npos) << r.status().message();
}

TEST(ImporterTest, DanglingInputAndStructuralErrors) {
  onnx::ModelProto m = NewModel(13);
  AddInput(&m, "X", onnx::TensorProto::FLOAT, {int64_t{2}});
  AddNode(&m, "Add", {"X", "ghost"}, {"Y"}, "adder");
  AddOutput(&m, "Y");
  auto r = Import(m);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("node adder (Add)"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("'ghost'"), std::string::npos) << r.status().message();

  m = NewModel(13);
  AddInput(&m, "X", onnx::TensorProto::FLOAT, {int64_t{2}});
  AddNode(&m, "Relu", {"X"}, {"Y"}, "r1");
  AddNode(&m, "Relu", {"X"}, {"Y"}, "r2");
  AddOutput(&m, "Y");
  r = Import(m);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'Y' is defined more than once"), std::string::npos)
      << r.status().message();

  m = NewModel(13);
  AddInput(&m, "X", onnx::TensorProto::FLOAT, {int64_t{2}});
  AddNode(&m, "Relu", {"X"}, {"Y"}, "r1");
  AddOutput(&m, "Z");
  r = Import(m);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("graph output 'Z' is not produced"), std::string::npos)
      << r.status().message();

  m = NewModel(13);
  r = Import(m);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no outputs"), std::string::npos) << r.status().message();
}

TEST(ImporterTest, ConstantNodesBecomeConstants) {
  onnx::ModelProto m = NewModel(13);
  AddInput(&m, "X", onnx::TensorProto::FLOAT, {int64_t{3}});
  auto* c1 = AddNode(&m, "Constant", {}, {"C1"}, "c1");
  auto* a1 = c1->add_attribute();
  a1->set_name("value");
  a1->set_type(onnx::AttributeProto::TENSOR);
  *a1->mutable_t() = FloatTensor("", {3}, {1.5f, 2.5f, 3.5f}, true);
  auto* c2 = AddNode(&m, "Constant", {}, {"C2"}, "c2");
  auto* a2 = c2->add_attribute();
  a2->set_name("value_ints");
  a2->set_type(onnx::AttributeProto::INTS);
  a2->add_ints(4);
  a2->add_ints(-1);
  auto* c3 = AddNode(&m, "Constant", {}, {"C3"}, "c3");
  auto* a3 = c3->add_attribute();
  a3->set_name("value_float");
  a3->set_type(onnx::AttributeProto::FLOAT);
  a3->set_f(0.25f);
  AddNode(&m, "Mul", {"X", "C1"}, {"M"});
  AddNode(&m, "Add", {"M", "C3"}, {"Y"});
  AddOutput(&m, "Y");
  AddOutput(&m, "C2", onnx::TensorProto::INT64);
  auto r = Import(m);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->graph.num_nodes(), 2u);  // no Constant nodes left
  const Value* v1 = r->graph.FindValue("C1");
  ASSERT_TRUE(v1->is_constant());
  EXPECT_EQ(v1->constant()->data<float>()[2], 3.5f);
  const Value* v2 = r->graph.FindValue("C2");
  ASSERT_TRUE(v2->is_constant());
  EXPECT_EQ(v2->dtype(), DType::kInt64);
  EXPECT_EQ(v2->constant()->data<int64_t>()[1], -1);
  const Value* v3 = r->graph.FindValue("C3");
  ASSERT_TRUE(v3->is_constant());
  EXPECT_EQ(v3->constant()->rank(), 0u);
  EXPECT_EQ(v3->constant()->data<float>()[0], 0.25f);

  auto* s = AddNode(&m, "Constant", {}, {"S"}, "strconst");
  auto* as = s->add_attribute();
  as->set_name("value_string");
  as->set_type(onnx::AttributeProto::STRING);
  as->set_s("hi");
  r = Import(m);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("value_string"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("strconst"), std::string::npos) << r.status().message();
}

TEST(ImporterTest, AttributesAndOptionalInputsOutputs) {
  onnx::ModelProto m = NewModel(13);
  AddInput(&m, "X", onnx::TensorProto::FLOAT, {int64_t{2}, int64_t{3}});
  *m.mutable_graph()->add_initializer() = FloatTensor("hi", {}, {6.f}, false);
  AddNode(&m, "Clip", {"X", "", "hi"}, {"C"}, "clip");
  auto* t = AddNode(&m, "Transpose", {"C"}, {"T"}, "tr");
  auto* perm = t->add_attribute();
  perm->set_name("perm");
  perm->set_type(onnx::AttributeProto::INTS);
  perm->add_ints(1);
  perm->add_ints(0);
  auto* d = AddNode(&m, "Dropout", {"T"}, {"Y", ""}, "drop");
  auto* f = d->add_attribute();
  f->set_name("seed");
  f->set_type(onnx::AttributeProto::INT);
  f->set_i(42);
  AddOutput(&m, "Y");
  auto r = Import(m);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::map<std::string, const Node*> by_name;
  for (const Node* n : r->graph.nodes()) by_name[n->name()] = n;
  const Node* clip = by_name.at("clip");
  ASSERT_EQ(clip->num_inputs(), 3u);
  EXPECT_EQ(clip->input(1), nullptr);
  EXPECT_EQ(clip->input(2)->name(), "hi");
  EXPECT_EQ(by_name.at("tr")->attrs().GetInts("perm"), (std::vector<int64_t>{1, 0}));
  const Node* drop = by_name.at("drop");
  EXPECT_EQ(drop->attrs().GetInt("seed"), 42);
  ASSERT_EQ(drop->num_outputs(), 2u);
  EXPECT_EQ(drop->output(1), nullptr);
  EXPECT_EQ(r->graph.outputs()[0]->shape()->ToString(), "[3,2]");
}

}  // namespace
}  // namespace kiln
