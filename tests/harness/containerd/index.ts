export {
  startContainerd,
  DEFAULT_NAMESPACE,
  type Containerd,
  type ContainerdOptions,
  type CtrOptions,
  type StopOptions,
} from './containerd.ts';
export { buildTestImage, buildTestImageArchive, testImageArgs, TEST_IMAGE_REF, type TestImageArchive, type Descriptor } from './image.ts';
export { stackBinaries, stackDir, type StackBinaries } from './stack.ts';
