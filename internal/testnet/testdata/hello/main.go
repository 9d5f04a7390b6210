// Command hello exists so that the testnet tests can exercise BuildBinary.
package main

import "fmt"

func main() { fmt.Println("hello from testnet") }
