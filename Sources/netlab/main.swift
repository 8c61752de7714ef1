import NetLab
import ArgumentParser
print(_probe())
