// The library scripted experiments import: `import NetLab` brings the topology model, the netlink layer and the lab
// controller.
@_exported import Topology
@_exported import Netlink
@_exported import Lab
@_exported import Wire
@_exported import Engine
@_exported import Resolver
@_exported import Oracle
@_exported import Driver
@_exported import Checks
@_exported import Files
