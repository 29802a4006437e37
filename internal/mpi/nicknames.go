package mpi

import "strings"

// nicknameGroups lists given names that clerks and patients use for one
// another. Each line is one group: a formal name followed by its short and
// familiar forms. A name may appear in several groups (pat, alex, chris).
const nicknameGroups = `
abigail abby abbie gail
albert al bert bertie
alexander alex alec sandy xander
alexandra alex alexa sandra lexi
alfred alf alfie fred
allison ally allie
andrew andy drew
angela angie
anthony tony ant
arthur art artie
barbara barb barbie babs
benjamin ben benny benji
bernard bernie
beverley bev
bradley brad
bridget biddy bridie
caroline carol carrie caz
catherine cathy cat kate katie kath
charles charlie chas chuck chaz
charlotte charlie lottie
christina chris tina chrissy kristina
christine chris chrissy tina
christopher chris kit topher
clifford cliff
cornelius neil con
cynthia cindy
daniel dan danny
david dave davy
deborah deb debbie debra
dominic dom
donald don donny
dorothy dot dottie dolly
douglas doug
edward ed eddie ted ned teddy
eleanor ellie nell nora
elizabeth liz lizzie beth betty eliza betsy libby bess elise
emily em emmy
emma em emmie
frances fran fanny frankie
francis frank frankie
frederick fred freddie freddy
gabriel gabe
gabrielle gabby gabi
geoffrey geoff jeff
gerald gerry jerry
gregory greg
harold harry hal
helen nell ellie
henry harry hank hal
isabella bella izzy isabel isabelle
isabelle bella izzy isabel isabella
jacob jake
james jim jimmy jamie
jacqueline jackie jacqui
jennifer jen jenny
jessica jess jessie
johanna jo hanna
john jack johnny jon
jonathan jon jonny nathan
joseph joe joey
josephine jo josie
joshua josh
judith judy
katherine kate kathy katie kath kathryn catherine
kenneth ken kenny
kimberley kim kimberly
lawrence larry laurie
leonard leo len lenny
louise lou lulu
madeline maddie maddy madeleine madison
margaret maggie meg peggy marge margie greta
matthew matt matty
melissa mel missy
michael mike mikey mick micky
mitchell mitch
nathaniel nate nat nathan
nicholas nick nicky nico
nicole nicky nikki
oliver ollie
olivia liv livvy
pamela pam
patricia pat patty trish tricia
patrick pat paddy
peter pete
philip phil pip phillip
rebecca becky becca
richard rick dick rich richie ricky
robert bob rob bobby robbie bert
ronald ron ronnie
russell russ
samantha sam sammy
samuel sam sammy
sarah sally sadie sara
stephanie steph
stephen steve stevie steven
steven steve stevie stephen
susan sue susie suzy
theodore ted theo teddy
thomas tom tommy
timothy tim timmy
victoria vicky tori vic
vincent vince vinnie
walter walt wally
william bill will billy willy liam
zachary zach zac
`

// nicknames maps a given name to the ids of the groups it belongs to.
var nicknames = func() map[string][]int {
	m := make(map[string][]int)
	for i, line := range strings.Split(strings.TrimSpace(nicknameGroups), "\n") {
		for _, n := range strings.Fields(line) {
			m[n] = append(m[n], i)
		}
	}
	return m
}()

// isNickname reports whether two distinct folded given names are known forms
// of one another.
func isNickname(a, b string) bool {
	ga, gb := nicknames[a], nicknames[b]
	for _, x := range ga {
		for _, y := range gb {
			if x == y {
				return true
			}
		}
	}
	return false
}
