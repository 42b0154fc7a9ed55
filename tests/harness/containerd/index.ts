export {
  startContainerd,
  DEFAULT_NAMESPACE,
  type Containerd,
  type ContainerdOptions,
  type CtrOptions,
  type StopOptions,
} from './containerd.ts';
export {
  buildTestImage,
  buildTestImageArchive,
  testImageArgs,
  TEST_IMAGE,
  TEST_IMAGE_REF,
  type TestImageArchive,
  type TestImageDefinition,
  type Descriptor,
} from './image.ts';
export { stackBinaries, stackDir, type StackBinaries } from './stack.ts';
export { CRI_NAMESPACE, PAUSE_IMAGE, defaultCriPlugin, prepareCri, type CriPluginOptions } from './cri.ts';
export { CriClient, type ContainerConfig, type PodSandboxConfig, type NamespaceOptions, type ContainerStatus, type CriContainer } from './cri-client.ts';
