"""
C{python -m p2pd fetch URL}: the same as the C{p2pd} command.
"""

from p2pd.fetch import main

main()
