"""
The interfaces of lmevoip, in one place.

Each component that another layer talks to is declared here as a
C{zope.interface} interface; providers say C{@implementer(...)} and the tests
check them with C{verifyObject}.
"""

from zope.interface import Attribute, Interface
