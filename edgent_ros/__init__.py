"""
edgent_ros: Edgent device-edge co-inference for ROS 2.

The ament build installs this package together with the generated ``edgent_ros.msg``; ``pip
install .`` installs only the pure-Python core. ``extend_path`` lets both installs of the same
package name live on one ``sys.path`` without shadowing each other: whichever comes first,
``edgent_ros.msg`` is still found in the ament install.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = '0.1.0'
