import ViTMergeCore
import ViTMergeKernels
print(Machine.cpuModel, Machine.buildISA)
