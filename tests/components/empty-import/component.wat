(component
  ;; Imports `healthcloud:platform/kv@0.1.0` as an empty instance (it needs none of the
  ;; interface's functions) while the manifest requests only `patient/Observation.rs`.
  ;; wasmtime would instantiate this happily, since nothing in it is ever called: only the
  ;; host's check of import names at install can refuse it. The file starts with
  ;; `(component` so the host recognizes it as component text.
  (import "healthcloud:platform/kv@0.1.0" (instance))
)
