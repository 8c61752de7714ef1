import Topology
import Netlink
