// Module kinds the Worker bundle imports (wrangler.toml rules): a precompiled `.wasm`
// (CompiledWasm) and the classifier's `.onnx` bytes (Data).
declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}
declare module "*.onnx" {
  const bytes: ArrayBuffer;
  export default bytes;
}
