export { startControlPlane, type ControlPlane, type ControlPlaneOptions, type StopOptions, type KubeConfigView, type AdminTls } from './control-plane.ts';
export { kubeBinDir, kubeBinary } from './binaries.ts';
export { HarnessError } from './errors.ts';
